"""The embedded store: one SQLite file in WAL mode, written by one thread of its own (see
:mod:`.sqlite_worker`): accounts and kept messages are answered once committed, history is
written behind the relay through a bounded queue.

Accounts are also held in memory (names and hashes are small), so that checking a name never
waits for the disk.
"""

import logging
from collections import OrderedDict
from collections.abc import Collection

import gevent
from gevent.pool import Group

from ...protocol import HistoryEntry, StoredMessage
from ..message_ids import first_id_at
from .mailboxes import Mailboxes
from .quotas import Quotas
from .sqlite_markers import CONVERSATIONS_SCHEMA, FORGET_CONVERSATIONS, NOTE_CONVERSATIONS, SQLiteMarkers
from .sqlite_markers import SCHEMA as MARKERS_SCHEMA
from .sqlite_reader import SQLiteReader
from .sqlite_rooms import DROPPED_ROOMS, EXPIRE_BY_ROW, SQLiteRooms, dropped_rooms, expire_rooms
from .sqlite_rooms import SCHEMA as ROOMS_SCHEMA
from .sqlite_search import FEWER_MERGES, INDEX_HISTORY, WITHOUT_COLUMN_SIZES, SQLiteSearch
from .sqlite_search import SCHEMA as SEARCH_SCHEMA
from .sqlite_worker import SQLiteWorker, a_file
from .store import DEFAULT_HISTORY_DAYS, StoreUnavailable, now_ms

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
    """
    CREATE TABLE tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL, expires_ms INTEGER NOT NULL);
    CREATE INDEX tokens_by_name ON tokens (name);
    """,
    ROOMS_SCHEMA,
    "ALTER TABLE offline ADD COLUMN message_id INTEGER NOT NULL DEFAULT 0",
    SEARCH_SCHEMA,
    MARKERS_SCHEMA,
    # The history is indexed for search with its rows, many at a time (INDEX_HISTORY), rather
    # than by a trigger, row by row: the writer keeps up with twice as many messages.
    "DROP TRIGGER history_search_add",
    # The same for the rooms' messages (INDEX_ROOMS, after the batch's rows).
    "DROP TRIGGER room_search_add",
    # The history expires by id (see _expire_and_count): one index fewer to write per message.
    "DROP INDEX history_by_time",
    # A user's conversations as the second name of the pair: a row per pair, written once a
    # batch, instead of an index entry per message (a third of what the writer spent on one).
    CONVERSATIONS_SCHEMA,
    # The search indexes without their column sizes (see sqlite_search.WITHOUT_COLUMN_SIZES).
    WITHOUT_COLUMN_SIZES,
    # The search indexes merged 16 segments at a time (see sqlite_search.FEWER_MERGES).
    FEWER_MERGES,
    # The rooms' messages expire by row number (see sqlite_rooms.EXPIRE_BY_ROW).
    EXPIRE_BY_ROW,
    # A dropped room's messages deleted a chunk at a time (see sqlite_rooms.DROPPED_ROOMS).
    DROPPED_ROOMS,
]
EXPIRY_INTERVAL = 3600.0
EXPIRY_CHUNK = 10_000  # rows of history, or of rooms' messages, one call of the expiry drops at most
_RECORD = "INSERT OR IGNORE INTO history (id, first, second, sender, time_ms, text) VALUES (?, ?, ?, ?, ?, ?)"
_AFTER_RECORD = (INDEX_HISTORY, NOTE_CONVERSATIONS)  # (see SQLiteWorker.write_bulk's then)
_KEEP = "INSERT INTO offline (recipient, sender, time_ms, text, message_id) VALUES (?, ?, ?, ?, ?)"
_MAILBOX_FILL = "SELECT recipient, sender, count(*), sum(length(CAST(text AS BLOB))) FROM offline"
_MAILBOXES = _MAILBOX_FILL + " GROUP BY recipient, sender"
_MAILBOX = _MAILBOX_FILL + " WHERE recipient = ? GROUP BY sender"
DEFAULT_QUOTAS = Quotas()
_INCREMENTAL = 2  # PRAGMA auto_vacuum


# A name's tokens past its ``most`` newest (by expiry, and by when written within a millisecond).
_OLDEST_TOKENS = """
    DELETE FROM tokens WHERE name = ?1 AND rowid NOT IN
        (SELECT rowid FROM tokens WHERE name = ?1 ORDER BY expires_ms DESC, rowid DESC LIMIT ?2)
"""


class SQLiteStore(SQLiteRooms, SQLiteSearch, SQLiteMarkers):
    def __init__(
        self,
        path,
        history_days: float = DEFAULT_HISTORY_DAYS,
        keep_history: bool = True,
        quotas: Quotas = DEFAULT_QUOTAS,
    ):
        self.path = path
        self._retention_ms = int(history_days * 86_400_000)
        self._keep_history = keep_history
        self._worker = SQLiteWorker(path)
        self._reader: SQLiteReader | None = None  # (a file's: see sqlite_reader; else the worker reads all)
        self._accounts: dict[str, str] = {}
        self.registered_names: Collection[str] = self._accounts
        self._mailboxes = Mailboxes(quotas)
        self._remembered_markers: OrderedDict[str, dict[str, int]] = OrderedDict()  # (see sqlite_markers)
        self._expiry = None
        self._last_room_row = 0
        self._deleting = Group()  # (see SQLiteRooms.delete_room)

    # --- Lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        accounts, mailboxes, self._last_room_row, dropped = self._worker.start(self._prepare)
        if a_file(self._worker.path):
            self._reader = SQLiteReader(self._worker.path)
            self._reader.start(lambda db: None)
        self._mailboxes.load(mailboxes)
        self._accounts.update(accounts)
        self._expiry = gevent.spawn(self._expire_now_and_then)
        for room, upto in dropped:
            self._deleting.spawn(self._delete_messages, room, upto)

    def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.kill()
        self._deleting.kill()
        if self._reader is not None:
            self._reader.stop()
        self._worker.stop()

    def _long_read(self, function, *args):
        """function(db, *args) for a read that may take long (a search, the unread counts over
        much of an account's history): on the reader's connection, once what was written before
        it is committed, so that it holds up no write (see sqlite_reader)."""
        if self._reader is None:  # (an in-memory database: one connection)
            return self._worker.call(function, *args)
        self._worker.wait_until_written()
        return self._reader.call(function, *args)

    def healthy(self) -> bool:
        return self._worker.healthy

    def _prepare(self, db):
        """(In the worker thread.) The schema, migrated; the accounts, the offline counts, the
        last row of the rooms' messages, and the dropped rooms whose messages are left."""
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        for number, script in enumerate(MIGRATIONS[version:], version + 1):
            db.executescript(
                f"BEGIN; {script}; DELETE FROM schema_version; INSERT INTO schema_version VALUES ({number}); COMMIT;"
            )
            log.info("database %s: schema version %d", self.path, number)
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
            # (Once: a file made before the file could shrink is rebuilt so that it can.)
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute("VACUUM")
        accounts = dict(db.execute("SELECT name, password_hash FROM accounts"))
        last_room_row = db.execute("SELECT coalesce(max(rowid), 0) FROM room_messages").fetchone()[0]
        return accounts, self._expire_and_count(db), last_room_row, dropped_rooms(db)

    def _expire_now_and_then(self):
        while True:
            gevent.sleep(EXPIRY_INTERVAL)
            try:
                self.expire()
            except StoreUnavailable:
                pass  # (the store's log has said why: the next round tries again)

    def expire(self) -> None:
        """Drop what is too old: the history and the rooms' messages EXPIRY_CHUNK rows a call of
        the writer's thread, its batches going between. (An hour of a busy server's history is
        millions of rows at about 6 us each with their indexes: in one call they held every
        write, and so every sender of history, for seconds.)"""
        while self._worker.call(self._expire_chunk):
            pass
        self._mailboxes.load(self._worker.call(self._expire_and_count))

    def _expire_chunk(self, db) -> bool:
        return _expire_rows(db, self._oldest_kept(), EXPIRY_CHUNK)

    def _oldest_kept(self) -> int:
        """The time (ms) before which offline messages and history are dropped."""
        return now_ms() - self._retention_ms

    def _expire_and_count(self, db):
        """Drop what is too old; what each mailbox holds, by sender (count and bytes)."""
        cutoff = self._oldest_kept()
        db.execute("DELETE FROM offline WHERE time_ms < ?", (cutoff,))
        _expire_rows(db, cutoff)  # (what the chunks left, if any; all of it at a start)
        db.execute(FORGET_CONVERSATIONS)
        db.execute("DELETE FROM tokens WHERE expires_ms < ?", (now_ms(),))
        db.execute("PRAGMA incremental_vacuum")  # the file gives back what expiry freed
        return db.execute(_MAILBOXES).fetchall()

    def _expire_mailbox(self, db, recipient):
        """Expiry on write: drop recipient's messages that are too old; what is left."""
        db.execute("DELETE FROM offline WHERE recipient = ? AND time_ms < ?", (recipient, self._oldest_kept()))
        return db.execute(_MAILBOX, (recipient,)).fetchall()

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

    # --- Session tokens -------------------------------------------------------------------

    def add_token(self, token_hash, name, expires_ms, most):
        self._worker.write("INSERT INTO tokens VALUES (?, ?, ?)", (token_hash, name, expires_ms))
        self._worker.write_and_wait(_OLDEST_TOKENS, (name, most))  # (the same transaction)

    def token_owner(self, token_hash):
        return self._worker.call(_token_owner, token_hash, now_ms())

    def revoke_token(self, token_hash):
        self._worker.write_and_wait("DELETE FROM tokens WHERE hash = ?", (token_hash,))

    def revoke_tokens(self, name):
        self._worker.write_and_wait("DELETE FROM tokens WHERE name = ?", (name,))

    # --- Offline messages ---------------------------------------------------------------

    def keep_offline(self, recipient, sender, text, time_ms, message_id):
        return self.keep_dropped(recipient, [(sender, text, message_id)], time_ms) == 1

    def keep_dropped(self, recipient, messages, time_ms):
        mailboxes = self._mailboxes
        sizes = [len(text.encode()) for _, text, _ in messages]
        if not mailboxes.fits(recipient, messages[0][0], sizes[0]):
            # Expired messages may be what fills it: they go now, not at the hourly sweep.
            self._reload_mailbox(recipient)
        rows = []
        for (sender, text, message_id), size in zip(messages, sizes, strict=True):
            if not mailboxes.fits(recipient, sender, size):
                break  # (in order: none after the first that does not fit)
            mailboxes.add(recipient, sender, size)
            rows.append((recipient, sender, time_ms, text, message_id))
        if not rows:
            return 0
        try:
            self._worker.write_and_wait(_KEEP, *rows)
        except BaseException:
            for (_, sender, _, _, _), size in zip(rows, sizes, strict=False):
                mailboxes.add(recipient, sender, -size, count=-1)
            raise
        return len(rows)

    def _reload_mailbox(self, recipient):
        self._mailboxes.reload(recipient, self._worker.call(self._expire_mailbox, recipient))

    def offline_page(self, name, limit):
        if not self._mailboxes.holds(name):
            return 0, []
        rows = self._worker.call(self._offline_page, name, self._oldest_kept(), limit)
        mark = rows[-1][0] if rows else 0
        return mark, [StoredMessage(sender, time_ms, text, message_id) for _, sender, time_ms, text, message_id in rows]

    def _offline_page(self, db, name, cutoff, limit):
        return db.execute(
            "SELECT id, sender, time_ms, text, message_id FROM offline WHERE recipient = ? AND time_ms >= ?"
            " ORDER BY id LIMIT ?",
            (name, cutoff, limit),
        ).fetchall()

    def remove_offline(self, name, mark):
        self._worker.write("DELETE FROM offline WHERE recipient = ? AND id <= ?", (name, mark))
        self._reload_mailbox(name)

    # --- History ------------------------------------------------------------------------

    def record(self, sender, recipient, text, time_ms, message_id):
        if self._keep_history:
            # (The pair's names in order, as the history is read by them.)
            if sender < recipient:
                row = (message_id, sender, recipient, sender, time_ms, text)
            else:
                row = (message_id, recipient, sender, sender, time_ms, text)
            self._worker.write_bulk(_RECORD, row, len(text), _AFTER_RECORD)

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


def _expire_rows(db, cutoff: int, most: int = -1) -> bool:
    """The oldest ``most`` (-1: all) of the history and of the rooms' messages before cutoff
    (ms): whether more may be left. (The history by id, which grows with time: the rows' own
    order, no index of their times to keep; the time is checked too, for rows kept before
    messages had such ids.)"""
    direct = db.execute(
        "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE id < ? AND time_ms < ? ORDER BY id LIMIT ?)",
        (first_id_at(cutoff), cutoff, most),
    ).rowcount
    return max(direct, expire_rooms(db, cutoff, most)) >= most


def _token_owner(db, token_hash, now):
    row = db.execute("SELECT name FROM tokens WHERE hash = ? AND expires_ms >= ?", (token_hash, now)).fetchone()
    return row[0] if row else None
