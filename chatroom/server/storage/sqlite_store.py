"""The embedded store: one SQLite file in WAL mode, written by one thread of its own (see
:mod:`.sqlite_worker`): accounts and kept messages are answered once committed, history is
written behind the relay through a bounded queue.

Accounts are also held in memory (names and hashes are small), so that checking a name never
waits for the disk.
"""

import logging
from collections.abc import Collection

import gevent

from ...protocol import HistoryEntry, StoredMessage
from .sqlite_worker import SQLiteWorker
from .store import DEFAULT_HISTORY_DAYS, MAX_OFFLINE, now_ms

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
_KEEP = "INSERT INTO offline (recipient, sender, time_ms, text) VALUES (?, ?, ?, ?)"


class SQLiteStore:
    def __init__(self, path, history_days: float = DEFAULT_HISTORY_DAYS, keep_history: bool = True):
        self.path = path
        self._retention_ms = int(history_days * 86_400_000)
        self._keep_history = keep_history
        self._worker = SQLiteWorker(path)
        self._accounts: dict[str, str] = {}
        self.registered_names: Collection[str] = self._accounts
        self._offline_counts: dict[str, int] = {}
        self._expiry = None

    # --- Lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        accounts, self._offline_counts = self._worker.start(self._prepare)
        self._accounts.update(accounts)
        self._expiry = gevent.spawn(self._expire_now_and_then)

    def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.kill()
        self._worker.stop()

    def healthy(self) -> bool:
        return self._worker.healthy

    def _prepare(self, db):
        """(In the worker thread.) The schema, migrated; the accounts, and the offline counts."""
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        for number, script in enumerate(MIGRATIONS[version:], version + 1):
            db.executescript(
                f"BEGIN; {script}; DELETE FROM schema_version; INSERT INTO schema_version VALUES ({number}); COMMIT;"
            )
            log.info("database %s: schema version %d", self.path, number)
        return dict(db.execute("SELECT name, password_hash FROM accounts")), self._expire_and_count(db)

    def _expire_now_and_then(self):
        while True:
            gevent.sleep(EXPIRY_INTERVAL)
            self._offline_counts = self._worker.call(self._expire_and_count)

    def _oldest_kept(self) -> int:
        """The time (ms) before which offline messages and history are dropped."""
        return now_ms() - self._retention_ms

    def _expire_and_count(self, db):
        """Drop what is too old; how many offline messages each recipient has left."""
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
        self._accounts[name] = password_hash  # taken at once: a second REGISTER fails meanwhile
        try:
            self._worker.write_and_wait("INSERT INTO accounts VALUES (?, ?, ?)", (name, password_hash, now_ms()))
        except BaseException:
            del self._accounts[name]
            raise
        return True

    def set_password_hash(self, name, password_hash):
        self._worker.write_and_wait("UPDATE accounts SET password_hash = ? WHERE name = ?", (password_hash, name))
        self._accounts[name] = password_hash

    # --- Offline messages ---------------------------------------------------------------

    def keep_offline(self, recipient, sender, text, time_ms):
        count = self._offline_counts.get(recipient, 0)
        if count >= MAX_OFFLINE:
            return False
        self._offline_counts[recipient] = count + 1
        try:
            self._worker.write_and_wait(_KEEP, (recipient, sender, time_ms, text))
        except BaseException:
            self._offline_counts[recipient] = self._offline_counts.get(recipient, 1) - 1
            raise
        return True

    def keep_dropped(self, recipient, messages, time_ms):
        count = self._offline_counts.get(recipient, 0)
        kept = messages[: max(0, MAX_OFFLINE - count)]
        if not kept:
            return 0
        self._offline_counts[recipient] = count + len(kept)
        rows = [(recipient, sender, time_ms, text) for sender, text in kept]
        try:
            self._worker.write_and_wait(_KEEP, *rows)
        except BaseException:
            self._offline_counts[recipient] = self._offline_counts.get(recipient, len(kept)) - len(kept)
            raise
        return len(kept)

    def take_offline(self, name):
        if not self._offline_counts.pop(name, 0):
            return []
        return self._worker.call(self._take_offline, name, self._oldest_kept())

    def _take_offline(self, db, name, cutoff):
        rows = db.execute(
            "SELECT sender, time_ms, text FROM offline WHERE recipient = ? AND time_ms >= ? ORDER BY id", (name, cutoff)
        ).fetchall()
        db.execute("DELETE FROM offline WHERE recipient = ?", (name,))
        return [StoredMessage(sender, time_ms, text) for sender, time_ms, text in rows]

    # --- History ------------------------------------------------------------------------

    def record(self, sender, recipient, text, time_ms):
        if self._keep_history:
            self._worker.wait_for_room()  # a sender faster than the disk slows down
            first, second = sorted((sender, recipient))
            self._worker.write(
                "INSERT INTO history (first, second, sender, time_ms, text) VALUES (?, ?, ?, ?, ?)",
                (first, second, sender, time_ms, text),
                len(text),
            )

    def history(self, name, peer, count, before):
        return self._worker.call(self._history, name, peer, count, before or (1 << 63) - 1, self._oldest_kept())

    def _history(self, db, name, peer, count, before, cutoff):
        first, second = sorted((name, peer))
        # Only what was said since name's account was made: a name registered anew (by
        # someone else, after its old user left) sees nothing of the old conversations.
        rows = db.execute(
            "SELECT id, time_ms, sender, text FROM history WHERE first = ? AND second = ? AND id < ? AND time_ms >= ?"
            " AND time_ms >= (SELECT created_ms FROM accounts WHERE name = ?) ORDER BY id DESC LIMIT ?",
            (first, second, before, cutoff, name, count),
        ).fetchall()
        return [HistoryEntry(row_id, time_ms, sender == name, text) for row_id, time_ms, sender, text in reversed(rows)]
