"""Read markers in the embedded store, for :class:`~.sqlite_store.SQLiteStore`: per account
and conversation (a name or a #room), the id of the last message read, which only moves
forward; what came after each marker, counted from the history and the rooms' messages; and
the people an account has a conversation with.

A client sets markers often (each message it shows), so a marker is answered from memory (the
markers of the accounts that set one lately, read from the database once) and written behind,
in the writer's next batch, never one transaction each: a flood of them costs the database a
row a batch, and keeps nobody else's writes waiting.
"""

from collections import OrderedDict
from typing import TYPE_CHECKING

from ...device_frames import MOST_COUNTED, MOST_MARKERS
from .sqlite_rooms import not_dropped

# Migration 6 (see sqlite_store.MIGRATIONS): the markers, and the index that finds the
# conversations in which an account is the second name of the pair...
SCHEMA = """
    CREATE TABLE markers (account TEXT NOT NULL, conversation TEXT NOT NULL, message_id INTEGER NOT NULL,
        PRIMARY KEY (account, conversation)) WITHOUT ROWID;
    CREATE INDEX history_by_second ON history (second, first, id);
"""
# ...which migration 10 replaces with the pairs themselves, one row each: noted by the writer
# after each batch of history (NOTE_CONVERSATIONS), forgotten once expiry has left a pair
# nothing (FORGET_CONVERSATIONS). A pair's messages are found by history_by_pair.
CONVERSATIONS_SCHEMA = """
    CREATE TABLE conversations (second TEXT NOT NULL, first TEXT NOT NULL, PRIMARY KEY (second, first))
        WITHOUT ROWID;
    INSERT INTO conversations SELECT DISTINCT second, first FROM history;
    DROP INDEX history_by_second
"""
NOTE_CONVERSATIONS = (
    "INSERT OR IGNORE INTO conversations SELECT DISTINCT second, first FROM history WHERE id BETWEEN ? AND ?"
)
FORGET_CONVERSATIONS = """
    DELETE FROM conversations WHERE NOT EXISTS
        (SELECT 1 FROM history WHERE first = conversations.first AND second = conversations.second)
"""

REMEMBERED_ACCOUNTS = 10_000  # accounts whose markers are kept in memory, the least lately used forgotten
_MOVE = """
    INSERT INTO markers VALUES (?, ?, ?)
    ON CONFLICT (account, conversation) DO UPDATE SET message_id = max(message_id, excluded.message_id)
"""
# What others said in name's direct conversations after name's marker in each, since name's
# account was made: one pass over each side of the pairs (name first, name second).
_UNREAD_DIRECT = """
    SELECT other, count(*) FROM (
        SELECT h.second AS other FROM history h WHERE h.first = :me AND h.sender != :me AND h.time_ms >= :since
            AND h.id > coalesce((SELECT message_id FROM markers WHERE account = :me AND conversation = h.second), 0)
        UNION ALL
        SELECT h.first FROM conversations c JOIN history h ON h.first = c.first AND h.second = :me
            WHERE c.second = :me AND h.sender != :me AND h.time_ms >= :since
            AND h.id > coalesce((SELECT message_id FROM markers WHERE account = :me AND conversation = h.first), 0)
    ) GROUP BY other
"""
# What others said in a room after name's marker, since name joined it.
_UNREAD_ROOM = f"""
    SELECT count(*) FROM (SELECT 1 FROM room_messages m WHERE room = :room AND id > :marker AND sender != :me
        AND time_ms >= coalesce((SELECT since_ms FROM room_members WHERE room = :room AND name = :me), 0)
        AND time_ms >= :cutoff AND {not_dropped("m", ":room")} LIMIT :most)
"""


class SQLiteMarkers:
    if TYPE_CHECKING:  # what SQLiteStore holds and does
        from .sqlite_worker import SQLiteWorker

        _worker: SQLiteWorker
        _remembered_markers: OrderedDict[str, dict[str, int]]  # account -> its markers, the latest used last

        def _oldest_kept(self) -> int: ...

        def _long_read(self, function, *args): ...

    def set_marker(self, name: str, conversation: str, message_id: int) -> int | None:
        markers = self._markers_of(name)
        if conversation not in markers and len(markers) >= MOST_MARKERS:
            return None
        if message_id > markers.get(conversation, 0):
            markers[conversation] = message_id
            self._worker.write(_MOVE, (name, conversation, message_id))
        return markers[conversation] if conversation in markers else 0

    def _markers_of(self, name: str) -> dict[str, int]:
        remembered = self._remembered_markers
        markers = remembered.get(name)
        if markers is None:
            loaded = self._worker.call(_markers, name)
            markers = remembered.setdefault(name, loaded)  # (another request may have loaded them meanwhile)
            if len(remembered) > REMEMBERED_ACCOUNTS:
                remembered.popitem(last=False)
        remembered.move_to_end(name)
        return markers

    def unread(self, name: str, rooms: list[str]) -> list[tuple[str, int, int]]:
        return self._long_read(_unread, name, rooms, self._oldest_kept())

    def partners(self, name: str) -> list[str]:
        return self._long_read(_partners, name)


def _partners(db, name) -> list[str]:
    rows = db.execute(
        "SELECT second FROM history WHERE first = ? UNION SELECT first FROM conversations WHERE second = ?",
        (name, name),
    )
    return [other for (other,) in rows]


def _markers(db, name) -> dict[str, int]:
    return dict(db.execute("SELECT conversation, message_id FROM markers WHERE account = ?", (name,)))


def _unread(db, name, rooms, cutoff) -> list[tuple[str, int, int]]:
    """(In the worker thread.) (conversation, marker, count) for every conversation with a
    marker or something unread."""
    markers = _markers(db, name)
    created = db.execute("SELECT created_ms FROM accounts WHERE name = ?", (name,)).fetchone()
    since = max(cutoff, created[0]) if created else 1 << 62
    counts = {
        other: min(count, MOST_COUNTED)
        for other, count in db.execute(_UNREAD_DIRECT, {"me": name, "since": since})
        if not other.startswith("#")
    }
    for room in rooms:
        asked = {"room": room, "marker": markers.get(room, 0), "me": name, "cutoff": cutoff, "most": MOST_COUNTED}
        (counts[room],) = db.execute(_UNREAD_ROOM, asked).fetchone()
    conversations = sorted(set(markers) | {c for c, count in counts.items() if count})
    return [(c, markers.get(c, 0), counts.get(c, 0)) for c in conversations]
