"""The embedded store: one SQLite file in WAL mode, written by one thread.

Nothing here touches the disk on the hub. Writes are queued on the hub and handed, once per
round of the event loop, as one batch to a single worker thread that commits them in one
transaction; reads go through the same thread, after every write queued before them, so a
reader always sees what the server has acknowledged. Accounts are also held in memory (names
and hashes are small), so that checking a name never waits for the disk.
"""

import logging
import sqlite3
from collections.abc import Container

import gevent
from gevent.event import Event
from gevent.monkey import get_original

from ...protocol import HistoryEntry, StoredMessage
from .store import DEFAULT_HISTORY_DAYS, MAX_OFFLINE, StoreUnavailable, now_ms

log = logging.getLogger(__name__)

# Each migration takes the schema from version i to i + 1.
MIGRATIONS = [
    """
    CREATE TABLE accounts (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_ms INTEGER NOT NULL);
    CREATE TABLE offline (
        id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, sender TEXT NOT NULL,
        time_ms INTEGER NOT NULL, text TEXT NOT NULL);
    CREATE INDEX offline_by_recipient ON offline (recipient, id);
    CREATE TABLE history (
        id INTEGER PRIMARY KEY, first TEXT NOT NULL, second TEXT NOT NULL, sender TEXT NOT NULL,
        time_ms INTEGER NOT NULL, text TEXT NOT NULL);
    CREATE INDEX history_by_pair ON history (first, second, id);
    CREATE INDEX history_by_time ON history (time_ms);
    """,
]
EXPIRY_INTERVAL = 3600.0
# The real thread and queue, even in a process that monkey-patched them.
_start_thread = get_original("_thread", "start_new_thread")
_SimpleQueue = get_original("queue", "SimpleQueue")


class SQLiteStore:
    def __init__(self, path, history_days: float = DEFAULT_HISTORY_DAYS, keep_history: bool = True):
        self.path = path
        self._retention_ms = int(history_days * 86_400_000)
        self._keep_history = keep_history
        self._jobs = _SimpleQueue()  # for the worker thread: ("write", writes) or ("call", ...)
        self._db: sqlite3.Connection | None = None  # the worker thread's own
        self._writes: list = []  # (sql, parameters) queued on the hub
        self._flush_due = False
        self._accounts: dict[str, str] = {}
        self.registered_names: Container[str] = self._accounts
        self._offline_counts: dict[str, int] = {}
        self._expiry = None

    # --- Lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        _start_thread(self._work, ())
        accounts, self._offline_counts = self._in_thread(self._open)
        self._accounts.update(accounts)
        self._expiry = gevent.spawn(self._expire_now_and_then)

    def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.kill()
        self._flush()
        self._in_thread(self._close)
        self._jobs.put(None)

    def _open(self):
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: durable at checkpoints, never corrupt
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        for number, script in enumerate(MIGRATIONS[version:], version + 1):
            db.executescript(
                f"BEGIN; {script}; DELETE FROM schema_version; INSERT INTO schema_version VALUES ({number}); COMMIT;"
            )
            log.info("database %s: schema version %d", self.path, number)
        self._db = db
        return dict(db.execute("SELECT name, password_hash FROM accounts")), self._expire_and_count()

    def _close(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    def _expire_now_and_then(self):
        while True:
            gevent.sleep(EXPIRY_INTERVAL)
            self._offline_counts = self._read(self._expire_and_count)

    def _oldest_kept(self) -> int:
        """The time (ms) before which offline messages and history are dropped."""
        return now_ms() - self._retention_ms

    def _expire_and_count(self):
        """Drop what is too old; how many offline messages each recipient has left."""
        db = self._db
        assert db is not None
        cutoff = self._oldest_kept()
        db.execute("DELETE FROM offline WHERE time_ms < ?", (cutoff,))
        db.execute("DELETE FROM history WHERE time_ms < ?", (cutoff,))
        return dict(db.execute("SELECT recipient, count(*) FROM offline GROUP BY recipient"))

    # --- Accounts -----------------------------------------------------------------------

    def password_hash(self, name):
        return self._accounts.get(name)

    def create_account(self, name, password_hash):
        if name in self._accounts:
            return False
        self._accounts[name] = password_hash
        self._write("INSERT INTO accounts VALUES (?, ?, ?)", (name, password_hash, now_ms()))
        return True

    def set_password_hash(self, name, password_hash):
        self._accounts[name] = password_hash
        self._write("UPDATE accounts SET password_hash = ? WHERE name = ?", (password_hash, name))

    # --- Offline messages ---------------------------------------------------------------

    def keep_offline(self, recipient, sender, text, time_ms):
        count = self._offline_counts.get(recipient, 0)
        if count >= MAX_OFFLINE:
            return False
        self._offline_counts[recipient] = count + 1
        self._write(
            "INSERT INTO offline (recipient, sender, time_ms, text) VALUES (?, ?, ?, ?)",
            (recipient, sender, time_ms, text),
        )
        return True

    def take_offline(self, name):
        if not self._offline_counts.pop(name, 0):
            return []
        return self._read(self._take_offline, name, self._oldest_kept())

    def _take_offline(self, name, cutoff):
        assert self._db is not None
        rows = self._db.execute(
            "SELECT sender, time_ms, text FROM offline WHERE recipient = ? AND time_ms >= ? ORDER BY id", (name, cutoff)
        ).fetchall()
        self._db.execute("DELETE FROM offline WHERE recipient = ?", (name,))
        return [StoredMessage(sender, time_ms, text) for sender, time_ms, text in rows]

    # --- History ------------------------------------------------------------------------

    def record(self, sender, recipient, text, time_ms):
        if self._keep_history:
            first, second = sorted((sender, recipient))
            self._write(
                "INSERT INTO history (first, second, sender, time_ms, text) VALUES (?, ?, ?, ?, ?)",
                (first, second, sender, time_ms, text),
            )

    def history(self, name, peer, count, before):
        return self._read(self._history, name, peer, count, before or (1 << 63) - 1, self._oldest_kept())

    def _history(self, name, peer, count, before, cutoff):
        first, second = sorted((name, peer))
        assert self._db is not None
        rows = self._db.execute(
            "SELECT id, time_ms, sender, text FROM history WHERE first = ? AND second = ? AND id < ? AND time_ms >= ?"
            " ORDER BY id DESC LIMIT ?",
            (first, second, before, cutoff, count),
        ).fetchall()
        return [HistoryEntry(row_id, time_ms, sender == name, text) for row_id, time_ms, sender, text in reversed(rows)]

    # --- The worker thread ----------------------------------------------------------------

    def _write(self, sql, parameters):
        self._writes.append((sql, parameters))
        if not self._flush_due:
            self._flush_due = True
            # Everything queued in this round of the event loop goes in one transaction.
            gevent.get_hub().loop.run_callback(self._flush)

    def _flush(self):
        self._flush_due = False
        if self._writes:
            writes, self._writes = self._writes, []
            self._jobs.put(("write", writes))

    def _work(self):
        """The worker thread: jobs in the order they were queued."""
        while (job := self._jobs.get()) is not None:
            if job[0] == "write":
                self._commit(job[1])
            else:
                _, function, args, outcome, watcher = job
                try:
                    outcome.append((True, function(*args)))
                except BaseException as err:  # handed to the waiting greenlet
                    outcome.append((False, err))
                watcher.send()  # thread-safe: wakes the hub

    def _commit(self, writes):
        db = self._db
        assert db is not None
        try:
            db.execute("BEGIN")
            for sql, parameters in writes:
                db.execute(sql, parameters)
            db.execute("COMMIT")
        except sqlite3.Error as err:
            log.error("database %s: %d writes lost: %s", self.path, len(writes), err)
            if db.in_transaction:
                db.execute("ROLLBACK")

    def _read(self, function, *args):
        self._flush()  # the read runs after every write queued before it
        return self._in_thread(function, *args)

    def _in_thread(self, function, *args):
        """function(*args) run by the worker thread, after every job queued before; the
        calling greenlet waits, the hub does not."""
        done = Event()
        watcher = gevent.get_hub().loop.async_()
        watcher.start(done.set)
        outcome: list = []
        try:
            self._jobs.put(("call", function, args, outcome, watcher))
            done.wait()
        finally:
            watcher.close()
        succeeded, value = outcome[0]
        if not succeeded:
            if isinstance(value, sqlite3.Error):
                if self._db is not None:  # (opening it, the caller says why it cannot)
                    log.error("database %s: %s", self.path, value)
                raise StoreUnavailable(str(value)) from value
            raise value
        return value
