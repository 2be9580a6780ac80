"""Search in the embedded store, for :class:`~.sqlite_store.SQLiteStore`: SQLite's FTS5 keeps
an index of the direct history and of the rooms' messages, filled by the writer thread from
the rows it has just written (many at a time) and emptied by triggers as they expire, so a
search reads the index, never the whole history. The index is read newest first (by rowid:
a direct message's id grows with its time, a room message's rowid with its insertion), so a
search stops at the count it wants instead of sorting every match of a common word.
"""

from typing import TYPE_CHECKING

from .sqlite_rooms import not_dropped

# Migration 5 (see sqlite_store.MIGRATIONS): the two indexes over the tables they search,
# kept by triggers, and filled with what is there already.
SCHEMA = """
    CREATE VIRTUAL TABLE history_search USING fts5(text, content='history', content_rowid='id');
    CREATE TRIGGER history_search_add AFTER INSERT ON history BEGIN
        INSERT INTO history_search (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER history_search_drop AFTER DELETE ON history BEGIN
        INSERT INTO history_search (history_search, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    INSERT INTO history_search (rowid, text) SELECT id, text FROM history;
    CREATE VIRTUAL TABLE room_search USING fts5(text, content='room_messages', content_rowid='rowid');
    CREATE TRIGGER room_search_add AFTER INSERT ON room_messages BEGIN
        INSERT INTO room_search (rowid, text) VALUES (new.rowid, new.text);
    END;
    CREATE TRIGGER room_search_drop AFTER DELETE ON room_messages BEGIN
        INSERT INTO room_search (room_search, rowid, text) VALUES ('delete', old.rowid, old.text);
    END;
    INSERT INTO room_search (rowid, text) SELECT rowid, text FROM room_messages;
"""


# Migration 11: the indexes made again without their column sizes (FTS5's columnsize=0), which
# only a ranking by bm25 reads (a search here is by rowid): a row of the size table the less
# for every message written, a fifth of what the writer spent on a room's message.
WITHOUT_COLUMN_SIZES = """
    DROP TABLE history_search;
    CREATE VIRTUAL TABLE history_search USING fts5(text, content='history', content_rowid='id', columnsize=0);
    INSERT INTO history_search (history_search) VALUES ('rebuild');
    DROP TABLE room_search;
    CREATE VIRTUAL TABLE room_search USING fts5(text, content='room_messages', content_rowid='rowid', columnsize=0);
    INSERT INTO room_search (room_search) VALUES ('rebuild');
"""

# Migration 12: the indexes merge their segments 16 at a time instead of 4 (FTS5's automerge),
# so that an entry is rewritten in fewer merges as an index grows: at two million rooms'
# messages the writer spends 6.2 µs a row instead of 7.3. A search reads more segments for it
# (0.02 -> 0.05 ms at that size). A level is merged whole, inside the write that adds one
# segment too many (crisismerge), only at 64, not 16: at 16 that would come before automerge's
# merging a little at each write (a batch of 1,000 rows took 200 ms instead of 40).
FEWER_MERGES = """
    INSERT INTO history_search (history_search, rank) VALUES ('automerge', 16);
    INSERT INTO history_search (history_search, rank) VALUES ('crisismerge', 64);
    INSERT INTO room_search (room_search, rank) VALUES ('automerge', 16);
    INSERT INTO room_search (room_search, rank) VALUES ('crisismerge', 64);
"""

# Since migration 7 a history row is indexed by the writer with the row (see sqlite_store), and
# since migration 8 a room's (sqlite_rooms.INDEX_ROOMS): the rows a batch wrote, by their keys.
INDEX_HISTORY = "INSERT INTO history_search (rowid, text) SELECT id, text FROM history WHERE id BETWEEN ? AND ?"


def match_phrase(query: str) -> str:
    """The user's words as an FTS5 query: every word, each a quoted string (so that nothing
    typed is read as FTS5's own syntax). FTS5 reads a query only up to a NUL ("unterminated
    string"); its tokenizer takes a NUL in a text for a space between words, so one in a word
    is given as a space: the same words, next to each other, as where the text was indexed."""
    return " ".join('"' + word.replace('"', '""').replace("\0", " ") + '"' for word in query.split())


class SQLiteSearch:
    if TYPE_CHECKING:  # what SQLiteStore holds and does

        def _oldest_kept(self) -> int: ...

        def _long_read(self, function, *args): ...

    def search(self, name, query, peer, rooms, count, before):
        return self._long_read(_search, name, match_phrase(query), peer, rooms, count, before, self._oldest_kept())


def _search(db, name, phrase, peer, rooms, count, before, cutoff):
    """(time, id, conversation, sender, text), newest first, of name's direct history (with
    peer only, if given) and of rooms, older than before (ms; 0: now)."""
    before = before or (1 << 62)
    found = []
    if peer is None or not peer.startswith("#"):
        pair = "AND h.first = ? AND h.second = ?" if peer else "AND (h.first = ? OR h.second = ?)"
        people = sorted((name, peer)) if peer else (name, name)
        rows = db.execute(
            "SELECT h.time_ms, h.id, h.first, h.second, h.sender, h.text FROM history_search s"
            f" JOIN history h ON h.id = s.rowid WHERE history_search MATCH ? {pair} AND h.time_ms < ?"
            " AND h.time_ms >= ? AND h.time_ms >= (SELECT created_ms FROM accounts WHERE name = ?)"
            " ORDER BY s.rowid DESC LIMIT ?",
            (phrase, *people, before, cutoff, name, count),
        ).fetchall()
        found += [
            (t, i, second if first == name else first, sender, text) for t, i, first, second, sender, text in rows
        ]
    if rooms:
        marks = ",".join("?" * len(rooms))
        found += db.execute(
            "SELECT m.time_ms, m.id, m.room, m.sender, m.text FROM room_search s"
            f" JOIN room_messages m ON m.rowid = s.rowid WHERE room_search MATCH ? AND m.room IN ({marks})"
            f" AND m.time_ms < ? AND m.time_ms >= ? AND {not_dropped('m')} ORDER BY s.rowid DESC LIMIT ?",
            (phrase, *rooms, before, cutoff, count),
        ).fetchall()
    return sorted(found, reverse=True)[:count]
