"""Read markers in the embedded store, for :class:`~.sqlite_store.SQLiteStore`: per account
and conversation (a name or a #room), the id of the last message read, which only moves
forward; what came after each marker, counted from the history and the rooms' messages; and
the people an account has a conversation with.
"""

from typing import TYPE_CHECKING

from ...device_frames import MOST_COUNTED

# Migration 6 (see sqlite_store.MIGRATIONS): the markers, and the index that finds the
# conversations in which an account is the second name of the pair.
SCHEMA = """
    CREATE TABLE markers (account TEXT NOT NULL, conversation TEXT NOT NULL, message_id INTEGER NOT NULL,
        PRIMARY KEY (account, conversation)) WITHOUT ROWID;
    CREATE INDEX history_by_second ON history (second, first, id);
"""

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
        SELECT h.first FROM history h WHERE h.second = :me AND h.sender != :me AND h.time_ms >= :since
            AND h.id > coalesce((SELECT message_id FROM markers WHERE account = :me AND conversation = h.first), 0)
    ) GROUP BY other
"""
# What others said in a room after name's marker, since name joined it.
_UNREAD_ROOM = """
    SELECT count(*) FROM (SELECT 1 FROM room_messages WHERE room = :room AND id > :marker AND sender != :me
        AND time_ms >= coalesce((SELECT since_ms FROM room_members WHERE room = :room AND name = :me), 0)
        AND time_ms >= :cutoff LIMIT :most)
"""


class SQLiteMarkers:
    if TYPE_CHECKING:  # what SQLiteStore holds
        from .sqlite_worker import SQLiteWorker

        _worker: SQLiteWorker

        def _oldest_kept(self) -> int: ...

    def set_marker(self, name: str, conversation: str, message_id: int) -> int:
        return self._worker.call(_set_marker, name, conversation, message_id)

    def unread(self, name: str, rooms: list[str]) -> list[tuple[str, int, int]]:
        return self._worker.call(_unread, name, rooms, self._oldest_kept())

    def partners(self, name: str) -> list[str]:
        return self._worker.call(_partners, name)


def _partners(db, name) -> list[str]:
    rows = db.execute(
        "SELECT second FROM history WHERE first = ? UNION SELECT first FROM history WHERE second = ?", (name, name)
    )
    return [other for (other,) in rows]


def _set_marker(db, name, conversation, message_id) -> int:
    """(In the worker thread.) Move the marker forward (never back); where it is now."""
    db.execute("BEGIN")
    db.execute(_MOVE, (name, conversation, message_id))
    db.execute("COMMIT")
    return _markers(db, name)[conversation]


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
