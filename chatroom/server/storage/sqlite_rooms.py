"""The embedded store's rooms, for :class:`~.sqlite_store.SQLiteStore`: what outlives a
connection (a room with an owner or registered members, their memberships and invitations)
is committed before it is answered; a room's messages go behind the relay, as direct history
does, many rows at a time and indexed for search with them, and expire with it.
"""

import collections
from typing import TYPE_CHECKING

from .store import KeptRoom, StoreUnavailable, now_ms

# The tables, made by migration 3 (see sqlite_store.MIGRATIONS).
SCHEMA = """
    CREATE TABLE rooms (name TEXT PRIMARY KEY, owner TEXT, topic TEXT NOT NULL, invite_only INTEGER NOT NULL);
    CREATE TABLE room_members (room TEXT NOT NULL, name TEXT NOT NULL, since_ms INTEGER NOT NULL,
        PRIMARY KEY (room, name));
    CREATE TABLE room_invites (room TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (room, name));
    CREATE TABLE room_messages (room TEXT NOT NULL, id INTEGER NOT NULL, sender TEXT NOT NULL,
        time_ms INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (room, id));
    CREATE INDEX room_messages_by_time ON room_messages (time_ms);
"""
# A room message's row number is the store's (see record_room), so that its search index entry
# can be written beside it, many rows at a time, like the direct history's.
_RECORD_ROOM = "INSERT OR REPLACE INTO room_messages (rowid, room, id, sender, time_ms, text) VALUES (?, ?, ?, ?, ?, ?)"
INDEX_ROOMS = "INSERT INTO room_search (rowid, text) SELECT rowid, text FROM room_messages WHERE rowid BETWEEN ? AND ?"

# Migration 13: the rooms' messages expire by row number (see expire_rooms), not through an
# index of their times: one index fewer written with every message (8% of the writer's row).
EXPIRE_BY_ROW = "DROP INDEX room_messages_by_time"

# Migration 14: rooms dropped whose messages are still being deleted (see delete_room): the
# room's rows up to ``upto`` are no longer its own (a room of that name made since has rows
# past it), and every read leaves them out.
DROPPED_ROOMS = "CREATE TABLE dropped_rooms (room TEXT PRIMARY KEY, upto INTEGER NOT NULL)"


def not_dropped(table: str, room: str = "") -> str:
    """The condition that a row of room_messages (as ``table``) is not a dropped room's.
    ``room``: the room's name as the query has it, where it reads one room (a parameter: its
    mark is then looked up once, not for every row read)."""
    return f"{table}.rowid > coalesce((SELECT upto FROM dropped_rooms d WHERE d.room = {room or table + '.room'}), 0)"


def expire_rooms(db, cutoff: int, most: int = -1) -> int:
    """Drop the rooms' messages older than cutoff (ms), the ``most`` oldest of them (-1: all):
    how many went. Rows are numbered as they are written, so their times grow with their
    numbers: the first row at cutoff is found by halving, a few lookups by number, and the rows
    before it go. (Their times are checked too: a row written after a clock was set back, older
    by its time than rows before it, stays until a later expiry, and is never given to a reader
    meanwhile.)"""
    return db.execute(
        "DELETE FROM room_messages WHERE rowid IN"
        " (SELECT rowid FROM room_messages WHERE rowid < ? AND time_ms < ? ORDER BY rowid LIMIT ?)",
        (_first_row_at(db, cutoff), cutoff, most),
    ).rowcount


def _first_row_at(db, cutoff: int) -> int:
    """The number of the first room message from cutoff on (one past the last if none is)."""
    low, high = db.execute("SELECT coalesce(min(rowid), 0), coalesce(max(rowid), 0) + 1 FROM room_messages").fetchone()
    while low < high:  # (each turn: low past a row before cutoff, or high down to the middle)
        middle = (low + high) // 2
        found = db.execute(
            "SELECT rowid, time_ms FROM room_messages WHERE rowid >= ? ORDER BY rowid LIMIT 1", (middle,)
        ).fetchone()
        if found is not None and found[1] < cutoff:
            low = found[0] + 1
        else:
            high = middle
    return low


class SQLiteRooms:
    if TYPE_CHECKING:  # what SQLiteStore holds
        from gevent.pool import Group

        from .sqlite_worker import SQLiteWorker

        _worker: SQLiteWorker
        _keep_history: bool
        _last_room_row: int  # the highest rowid of room_messages (read at start)
        _deleting: Group  # the greenlets deleting dropped rooms' messages

        def _oldest_kept(self) -> int: ...

    def load_rooms(self):
        return self._worker.call(_load_rooms)

    def save_room(self, name, owner, topic, invite_only):
        self._worker.write_and_wait(
            "INSERT INTO rooms VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE"
            " SET owner = excluded.owner, topic = excluded.topic, invite_only = excluded.invite_only",
            (name, owner, topic, int(invite_only)),
        )

    def delete_room(self, name):
        """Forget the room, and its messages: at once for every read, and on disk a chunk at a
        time, as expiry drops rows (a room's week of history is hundreds of thousands of rows,
        about 2.4 us each with the search index: in one transaction they held every write, and
        so every sender of history, for as long)."""
        for table in ("rooms WHERE name", "room_members WHERE room", "room_invites WHERE room"):
            self._worker.write(f"DELETE FROM {table} = ?", (name,))
        upto = self._last_room_row  # (every message of the room so far; the writes go in order)
        self._worker.write_and_wait(
            "INSERT INTO dropped_rooms VALUES (?, ?) ON CONFLICT (room) DO UPDATE SET upto = excluded.upto",
            (name, upto),
        )
        self._deleting.spawn(self._delete_messages, name, upto)

    def _delete_messages(self, room, upto):
        """(A greenlet.) A dropped room's messages, DELETE_CHUNK rows a call of the writer's
        thread, its batches going between; then the room's mark."""
        try:
            while self._worker.call(_delete_chunk, room, upto):
                pass
        except StoreUnavailable:
            pass  # (the store's log has said why; the rows stay out of reads, and a restart goes on)

    def add_member(self, room, name):
        self._worker.write_and_wait("INSERT OR IGNORE INTO room_members VALUES (?, ?, ?)", (room, name, now_ms()))

    def remove_member(self, room, name):
        self._worker.write_and_wait("DELETE FROM room_members WHERE room = ? AND name = ?", (room, name))

    def add_invite(self, room, name):
        self._worker.write_and_wait("INSERT OR IGNORE INTO room_invites VALUES (?, ?)", (room, name))

    def remove_invite(self, room, name):
        self._worker.write_and_wait("DELETE FROM room_invites WHERE room = ? AND name = ?", (room, name))

    def record_room(self, room, message_id, sender, text, time_ms):
        if self._keep_history:
            self._last_room_row = row = self._last_room_row + 1  # (one process writes the file)
            self._worker.write_bulk(
                _RECORD_ROOM, (row, room, message_id, sender, time_ms, text), len(text), (INDEX_ROOMS,)
            )

    def room_history(self, room, count, before):
        return self._worker.call(_room_history, room, count, before or (1 << 63) - 1, self._oldest_kept())


def _load_rooms(db) -> list[KeptRoom]:
    members, invited = collections.defaultdict(list), collections.defaultdict(list)
    for room, name in db.execute("SELECT room, name FROM room_members ORDER BY since_ms"):
        members[room].append(name)
    for room, name in db.execute("SELECT room, name FROM room_invites"):
        invited[room].append(name)
    # (Each room's last message from the end of its part of the key: no scan of every room's.)
    last = f"SELECT id FROM room_messages m WHERE m.room = r.name AND {not_dropped('m')} ORDER BY id DESC LIMIT 1"
    return [
        KeptRoom(name, owner, topic, bool(invite_only), members[name], invited[name], last_id)
        for name, owner, topic, invite_only, last_id in db.execute(
            f"SELECT name, owner, topic, invite_only, coalesce(({last}), 0) FROM rooms r"
        )
    ]


def _room_history(db, room, count, before, cutoff):
    rows = db.execute(
        "SELECT id, time_ms, sender, text FROM room_messages m WHERE room = ?1 AND id < ?2 AND time_ms >= ?3"
        f" AND {not_dropped('m', '?1')} ORDER BY id DESC LIMIT ?4",
        (room, before, cutoff, count),
    ).fetchall()
    return list(reversed(rows))


DELETE_CHUNK = 10_000  # a dropped room's rows one call of the writer's thread deletes at most


def _delete_chunk(db, room, upto) -> bool:
    """Delete DELETE_CHUNK of a dropped room's rows (up to upto); once none is left, its mark
    (unless the room was dropped again since, further): whether more may be left."""
    deleted = db.execute(
        "DELETE FROM room_messages WHERE rowid IN"
        " (SELECT rowid FROM room_messages WHERE room = ? AND rowid <= ? LIMIT ?)",
        (room, upto, DELETE_CHUNK),
    ).rowcount
    if deleted < DELETE_CHUNK:
        db.execute("DELETE FROM dropped_rooms WHERE room = ? AND upto = ?", (room, upto))
    return deleted == DELETE_CHUNK


def dropped_rooms(db) -> list[tuple[str, int]]:
    """The rooms whose messages are still to be deleted (a restart goes on with them)."""
    return db.execute("SELECT room, upto FROM dropped_rooms").fetchall()
