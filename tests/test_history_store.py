"""The embedded store's direct history, without sockets: a user's conversations are found
whichever name of the pair sorts first, survive the migration that keeps them as pairs, and
are forgotten once expiry has left them no message; the writer's rows reach SQLite whole, in
order, many to a statement."""

import os
import sqlite3
import subprocess
import sys

import gevent
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatroom.server.message_ids import first_id_at, next_id
from chatroom.server.storage import sqlite_rooms, sqlite_worker
from chatroom.server.storage.multirow import _PARAMETER_LIMIT, ROWS_PER_INSERT, insert_rows
from chatroom.server.storage.sqlite_markers import CONVERSATIONS_SCHEMA
from chatroom.server.storage.sqlite_rooms import INDEX_ROOMS, expire_rooms
from chatroom.server.storage.sqlite_rooms import SCHEMA as ROOMS_SCHEMA
from chatroom.server.storage.sqlite_search import FEWER_MERGES, INDEX_HISTORY, WITHOUT_COLUMN_SIZES
from chatroom.server.storage.sqlite_store import MIGRATIONS, SQLiteStore
from chatroom.server.storage.store import now_ms
from chatroom.testing import WAIT, eventually


@pytest.fixture
def open_store():
    """open_store(path, history_days=7.0) -> a started SQLiteStore; open_store.close(store)
    stops one; the others are stopped at the end."""
    opened = []

    def open_store(path, history_days=7.0):
        store = SQLiteStore(path, history_days)
        with gevent.Timeout(WAIT):
            store.start()
        opened.append(store)
        return store

    def close(store):
        opened.remove(store)
        with gevent.Timeout(WAIT):
            store.stop()

    open_store.close = close
    yield open_store
    with gevent.Timeout(WAIT):
        for store in opened:
            store.stop()


def say(store, sender, recipient, text, time_ms=None):
    message_id, now = next_id()
    if time_ms is not None:
        message_id = first_id_at(time_ms)
    store.record(sender, recipient, text, time_ms or now, message_id)
    return message_id


def test_a_user_finds_the_conversations_in_which_their_name_sorts_second(tmp_path, open_store):
    store = open_store(tmp_path / "db")
    for name in ("alice", "bob", "zoe"):
        store.create_account(name, "hash")
    say(store, "alice", "zoe", "hi zoe")  # (the pair is alice, zoe: zoe second)
    say(store, "alice", "zoe", "are you there?")
    say(store, "zoe", "alice", "here")
    say(store, "zoe", "bob", "and you?")  # (bob, zoe: zoe second again)
    with gevent.Timeout(WAIT):
        assert sorted(store.partners("zoe")) == ["alice", "bob"]
        assert store.partners("alice") == ["zoe"] and store.partners("bob") == ["zoe"]
        # What the others said, not one's own, counted from the marker.
        assert store.unread("zoe", []) == [("alice", 0, 2)]
        assert store.unread("bob", []) == [("zoe", 0, 1)]
        [read] = [entry.id for entry in store.history("zoe", "alice", 10, 0) if entry.text == "hi zoe"]
        store.set_marker("zoe", "alice", read)
        assert store.unread("zoe", []) == [("alice", read, 1)]


def test_the_conversations_of_a_database_from_before_are_kept(tmp_path, open_store):
    path = tmp_path / "db"
    message_id, time_ms = next_id()
    before = MIGRATIONS.index(CONVERSATIONS_SCHEMA)
    with sqlite3.connect(path) as db:  # the schema of the version before, with a conversation
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for script in MIGRATIONS[:before]:
            db.executescript(script)
        db.execute("INSERT INTO schema_version VALUES (?)", (before,))
        db.executemany("INSERT INTO accounts VALUES (?, 'hash', ?)", [("alice", time_ms - 1), ("zoe", time_ms - 1)])
        db.execute("INSERT INTO history VALUES (?, 'alice', 'zoe', 'alice', ?, 'from before')", (message_id, time_ms))
    db.close()
    store = open_store(path)
    with gevent.Timeout(WAIT):
        assert store.partners("zoe") == ["alice"]
        assert store.unread("zoe", []) == [("alice", 0, 1)]
    with sqlite3.connect(path) as db:
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.close()
    assert "history_by_pair" in indexes and "history_by_second" not in indexes


def test_what_was_found_before_the_indexes_lost_their_column_sizes_is_found_after(tmp_path, open_store):
    path = tmp_path / "db"
    message_id, time_ms = next_id()
    before = MIGRATIONS.index(WITHOUT_COLUMN_SIZES)
    with sqlite3.connect(path) as db:  # the version before, a message and a room's indexed
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for script in MIGRATIONS[:before]:
            db.executescript(script)
        db.execute("INSERT INTO schema_version VALUES (?)", (before,))
        db.executemany("INSERT INTO accounts VALUES (?, 'hash', ?)", [("alice", time_ms - 1), ("zoe", time_ms - 1)])
        db.execute(
            "INSERT INTO history VALUES (?, 'alice', 'zoe', 'alice', ?, 'lighthouse keeper')", (message_id, time_ms)
        )
        db.execute("INSERT INTO room_messages VALUES ('#sea', 1, 'zoe', ?, 'lighthouse at dawn')", (time_ms,))
        db.execute(INDEX_HISTORY, (message_id, message_id))
        db.execute("INSERT INTO room_search (rowid, text) SELECT rowid, text FROM room_messages")
    db.close()
    store = open_store(path)
    with gevent.Timeout(WAIT):
        say(store, "zoe", "alice", "a lighthouse again")
        store.record_room("#sea", 2, "alice", "no lighthouse here", now_ms())
        found = store.search("alice", "lighthouse", None, ["#sea"], 10, 0)
        gone = store.search("alice", "keeper", None, ["#sea"], 10, 0)
    assert sorted(text for *_, text in found) == [
        "a lighthouse again",
        "lighthouse at dawn",
        "lighthouse keeper",
        "no lighthouse here",
    ]
    assert [text for *_, text in gone] == ["lighthouse keeper"]
    with sqlite3.connect(path) as db:
        made = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE name IN ('history_search', 'room_search')"))
    db.close()
    assert all("columnsize=0" in sql for sql in made.values()) and len(made) == 2


def test_the_search_indexes_of_a_database_from_before_merge_sixteen_segments_at_a_time(tmp_path, open_store):
    path = tmp_path / "db"
    before = MIGRATIONS.index(FEWER_MERGES)
    with sqlite3.connect(path) as db:  # the version before
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for script in MIGRATIONS[:before]:
            db.executescript(script)
        db.execute("INSERT INTO schema_version VALUES (?)", (before,))
    db.close()
    open_store.close(open_store(path))
    db = sqlite3.connect(path, isolation_level=None)
    for index in ("history_search", "room_search"):
        assert dict(db.execute(f"SELECT k, v FROM {index}_config WHERE k LIKE '%merge'")) == {
            "automerge": 16,
            "crisismerge": 64,
        }
    # (What the merges cost is the bench's to measure; here, that the index still finds all.)
    for number in range(1, 41):  # a segment each
        db.execute("BEGIN")
        db.execute("INSERT INTO room_messages VALUES ('#sea', ?, 'zoe', 0, ?)", (number, f"wave{number} at dawn"))
        db.execute(INDEX_ROOMS, (number, number))
        db.execute("COMMIT")
    found = db.execute("SELECT rowid FROM room_search WHERE room_search MATCH 'dawn' ORDER BY rowid DESC LIMIT 3")
    assert found.fetchall() == [(40,), (39,), (38,)]
    db.execute("INSERT INTO room_search (room_search) VALUES ('integrity-check')")
    db.close()


def test_a_search_for_words_with_a_nul_finds_them_as_indexed(tmp_path, open_store):
    store = open_store(tmp_path / "db")
    for name in ("alice", "zoe"):
        store.create_account(name, "hash")
    say(store, "alice", "zoe", "see a\0b here")
    store.record_room("#sea", 1, "alice", "wave\0crest", now_ms())
    with gevent.Timeout(WAIT):
        assert [text for *_, text in store.search("zoe", "a\0b", None, [], 10, 0)] == ["see a\0b here"]
        assert [text for *_, text in store.search("zoe", "b\0a", None, [], 10, 0)] == []  # (a phrase: in order)
        assert [text for *_, text in store.search("zoe", "\0", None, ["#sea"], 10, 0)] == []
        assert [text for *_, text in store.search("zoe", "wave\0crest", None, ["#sea"], 10, 0)] == ["wave\0crest"]
    assert store.healthy()


def searched_for_written(store) -> list[str]:
    return [text for *_, text in store.search("zoe", "written", None, [], 9, 0)]


@pytest.mark.parametrize(
    "module, function, read, expected",
    [
        ("sqlite_search", "_search", searched_for_written, ["just written"]),
        ("sqlite_markers", "_unread", lambda store: store.unread("zoe", []), [("alice", 0, 1)]),
    ],
    ids=["search", "unread"],
)
def test_a_long_read_holds_up_no_write(tmp_path, open_store, monkeypatch, module, function, read, expected):
    """A search for a word common in others' conversations may read much of the index, the
    unread counts much of an account's history: each reads on a connection of its own, while
    writes (an account's, which someone waits for) are committed beside it; and it finds what
    was written before it was asked."""
    import importlib
    import threading
    import time

    from gevent.event import Event

    store = open_store(tmp_path / "db")
    for name in ("alice", "zoe"):
        store.create_account(name, "hash")
    say(store, "alice", "zoe", "just written")
    where = importlib.import_module(f"chatroom.server.storage.{module}")
    reading, started, done = getattr(where, function), threading.Event(), Event()

    def slow_read(*args):  # (in the thread: a read that takes long)
        started.set()
        time.sleep(1.0)
        return reading(*args)

    monkeypatch.setattr(where, function, slow_read)
    asked = gevent.spawn(read, store)
    with gevent.Timeout(WAIT):
        while not started.is_set():  # (a thread's event: looked at, the hub free between looks)
            gevent.sleep(0.01)
    gevent.spawn(lambda: (store.create_account("bob", "hash"), done.set()))
    assert done.wait(0.6), "an account was not written while a long read was under way"
    with gevent.Timeout(WAIT):
        assert asked.get() == expected


def test_a_conversation_goes_with_its_last_message(tmp_path, open_store):
    path = tmp_path / "db"
    store = open_store(path)
    store.create_account("alice", "hash")
    store.create_account("zoe", "hash")
    say(store, "alice", "zoe", "an hour ago", time_ms=now_ms() - 3_600_000)
    with gevent.Timeout(WAIT):
        assert store.partners("zoe") == ["alice"]
    open_store.close(store)
    store = open_store(path, history_days=60 / 86_400)  # a minute kept: expiry, as it starts
    with gevent.Timeout(WAIT):
        assert store.partners("zoe") == [] and store.partners("alice") == []
        say(store, "zoe", "alice", "a new one")
        assert store.partners("alice") == ["zoe"] and store.partners("zoe") == ["alice"]


def test_expiry_drops_the_old_a_chunk_at_a_time_and_keeps_the_rest(tmp_path, open_store, monkeypatch):
    """Each chunk one call of the writer's thread, so that its batches (the senders') go
    between: an hour of a busy server's history no longer holds them up for seconds."""
    from chatroom.server.storage import sqlite_store

    monkeypatch.setattr(sqlite_store, "EXPIRY_CHUNK", 10)
    store = open_store(tmp_path / "db", history_days=60 / 86_400)  # a minute kept
    for name in ("alice", "zoe"):
        store.create_account(name, "hash")
    old = now_ms() - 3_600_000
    for number in range(35):
        say(store, "alice", "zoe", f"old {number}", time_ms=old + number)
    for number in range(1, 26):
        store.record_room("#r", number, "alice", f"old {number}", old + number)
    say(store, "alice", "zoe", "fresh")
    store.record_room("#r", 26, "alice", "fresh", now_ms())
    chunks = []
    expire_chunk = store._expire_chunk
    monkeypatch.setattr(store, "_expire_chunk", lambda db: chunks.append(1) or expire_chunk(db))
    with gevent.Timeout(WAIT):
        store.expire()
        left = store._worker.call(
            lambda db: [db.execute(f"SELECT text FROM {table}").fetchall() for table in ("history", "room_messages")]
        )
    assert left == [[("fresh",)], [("fresh",)]]
    assert len(chunks) == 4  # (35 rows of history: three full chunks, then one that was not)


class _Recording:
    """A connection that notes how many parameters each statement was given."""

    def __init__(self, db):
        self.db, self.parameters = db, []

    def execute(self, sql, parameters):
        self.parameters.append(len(parameters))
        return self.db.execute(sql, parameters)


@pytest.mark.parametrize("count", [1, 2, 127, 128, 129, 300, 1000])
@pytest.mark.parametrize("columns", [2, 6, 20])
def test_many_rows_reach_sqlite_whole_and_in_order_in_statements_within_its_limit(count, columns):
    names = [f"c{index}" for index in range(columns)]
    sql = f"INSERT INTO t ({', '.join(names)}) VALUES ({', '.join('?' * columns)})"
    rows = [tuple([number, *(f"{number}\x00{column}" for column in range(1, columns))]) for number in range(count)]
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute(f"CREATE TABLE t ({', '.join(names)})")
    recording = _Recording(db)
    insert_rows(recording, sql, rows)  # type: ignore[arg-type]
    assert db.execute("SELECT * FROM t ORDER BY rowid").fetchall() == rows
    per_statement = [parameters // columns for parameters in recording.parameters]
    assert sum(per_statement) == count and all(n * columns <= _PARAMETER_LIMIT for n in per_statement)
    most = max(per_statement)

    def power_of_two_within(n: int) -> int:
        return 1 << (n.bit_length() - 1)

    assert most == min(ROWS_PER_INSERT, power_of_two_within(count), power_of_two_within(_PARAMETER_LIMIT // columns))
    assert len(per_statement) <= count // most + most.bit_length()  # (the rest in halves)


@given(st.sets(st.integers(1, 400), max_size=60), st.integers(0, 450))
def test_a_rooms_messages_expire_by_row_as_their_times_say(rows, cutoff):
    """Rows numbered as written, with gaps where some went before: each row's time grows with
    its number (here, ten times it), and exactly those before cutoff go."""
    db = sqlite3.connect(":memory:")
    db.executescript(ROOMS_SCHEMA)
    db.executemany(
        "INSERT INTO room_messages (rowid, room, id, sender, time_ms, text) VALUES (?, '#r', ?, 'a', ?, '')",
        [(row, row, row * 10) for row in rows],
    )
    expire_rooms(db, cutoff * 10)
    left = [row for (row,) in db.execute("SELECT rowid FROM room_messages ORDER BY rowid")]
    assert left == sorted(row for row in rows if row >= cutoff)


def test_a_rooms_old_messages_expire_from_a_database_without_the_index_of_their_times(tmp_path, open_store):
    path = tmp_path / "db"
    store = open_store(path)
    hours_ago = now_ms() - 7_200_000
    # (The fourth is older by its time than the one before it: a clock was set back.)
    for number, time_ms in enumerate([hours_ago, hours_ago + 1, now_ms(), hours_ago + 2, now_ms()], start=1):
        store.record_room("#sea", number, "zoe", f"wave {number}", time_ms)
    open_store.close(store)
    store = open_store(path, history_days=60 / 86_400)  # a minute kept: expiry, as it starts
    with gevent.Timeout(WAIT):
        kept = store.room_history("#sea", 10, 0)
    assert [text for *_, text in kept] == ["wave 3", "wave 5"]
    open_store.close(store)
    with sqlite3.connect(path) as db:
        assert [text for (text,) in db.execute("SELECT text FROM room_messages ORDER BY rowid")] == [
            "wave 3",
            "wave 4",  # (kept until an expiry finds it before the first row at the cutoff)
            "wave 5",
        ]
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'room_messages_by_time'").fetchone() == (0,)
    db.close()


# A store's batches of rooms' messages like the load generator's (ten rooms, a long word
# each), in a process of its own (SQLite reads its temporary directory from the environment
# once), on a database its migrations have made already (they may use temporary files).
_WITHOUT_TEMPORARY_FILES = """
import sys, gevent
from chatroom.server.storage import sqlite_worker
if sys.argv[2] == "python":
    sqlite_worker.compiled = None
from chatroom.server.storage.sqlite_store import SQLiteStore
from chatroom.server.storage.store import now_ms
store = SQLiteStore(sys.argv[1], 7.0)
with gevent.Timeout(30):
    store.start()
    assert (store._worker._batches is not None) == (sys.argv[2] == "c")
    for number in range(1, 6001):
        store.record_room(f"#r{number % 10}", number, "alice", f"{number:016x}{number * 7919:016x}waves", now_ms())
        if number % 2000 == 0:
            store._worker.flush()
    assert len(store.room_history("#r5", 1000, 0)) == 600
    assert store.healthy()
    store.stop()
"""


@pytest.mark.process
@pytest.mark.skipif(os.geteuid() != 0, reason="only root may write to /proc as SQLite's access() sees it")
@pytest.mark.parametrize("writer", ["c", "python"])
def test_the_writers_batches_need_no_temporary_directory(tmp_path, open_store, writer):
    """SQLite spills the statement journal of a batch's INSERT of many rows to a temporary
    file; the writer keeps it in memory (temp_store), so that it makes no file a batch and works
    where the temporary directory cannot be written (here /proc, which passes SQLite's check
    for root and refuses every file)."""
    if writer == "c" and sqlite_worker.compiled is None:
        pytest.skip("_batch_writer.c was not built here")
    open_store.close(open_store(tmp_path / "db"))  # (migrated)
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TEMPORARY_FILES, str(tmp_path / "db"), writer],
        env=dict(os.environ, SQLITE_TMPDIR="/proc"),
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )
    assert run.returncode == 0, run.stderr
    assert "cannot write" not in run.stderr


def read(path, sql: str, *parameters) -> list:
    """sql's rows, read from the file on a connection of its own."""
    with sqlite3.connect(path) as db:
        rows = db.execute(sql, parameters).fetchall()
    db.close()
    return rows


def room_rows(path, room: str) -> int:
    return read(path, "SELECT count(*) FROM room_messages WHERE room = ?", room)[0][0]


def dropped_marks(path) -> list:
    return read(path, "SELECT room FROM dropped_rooms")


def test_a_dropped_rooms_messages_are_gone_at_once_and_deleted_a_chunk_at_a_time(tmp_path, open_store, monkeypatch):
    """A room dropped (its last member gone) takes its history with it: no read finds a message
    of it from then on, a room of the same name made since sees only its own, and the rows are
    deleted a chunk at a time, a registration going between, not in one transaction that holds
    every write up; a restart goes on with what is left."""
    monkeypatch.setattr(sqlite_rooms, "DELETE_CHUNK", 100)
    path = tmp_path / "db"
    store = open_store(path)
    store.create_account("alice", "hash")
    store.add_member("#big", "alice")
    for number in range(1, 1001):
        store.record_room("#big", number, "alice", f"wave {number}", now_ms())
    store.record_room("#other", 1, "alice", "wave elsewhere", now_ms())
    with gevent.Timeout(WAIT):
        store.delete_room("#big")
        store.create_account("zoe", "hash")  # (queued behind the first chunk of the deletion)
    assert room_rows(path, "#big") > 500  # the registration did not wait for all of them
    with gevent.Timeout(WAIT):
        assert store.room_history("#big", 10, 0) == []
        found = store.search("alice", "wave", None, ["#big", "#other"], 10, 0)
        assert [(room, text) for _, _, room, _, text in found] == [("#other", "wave elsewhere")]
        assert store.unread("zoe", ["#big"]) == []
    store.record_room("#big", 2000, "zoe", "a new room of the old name", now_ms())
    with gevent.Timeout(WAIT):
        assert [text for *_, text in store.room_history("#big", 10, 0)] == ["a new room of the old name"]
    open_store.close(store)  # (the deletion may be under way still; see also the test below)
    assert room_rows(path, "#big") >= 1
    store = open_store(path)
    with gevent.Timeout(WAIT):
        assert [text for *_, text in store.room_history("#big", 10, 0)] == ["a new room of the old name"]
    eventually(lambda: room_rows(path, "#big") == 1 and not dropped_marks(path), what="the old rows deleted")
    with gevent.Timeout(WAIT):
        assert [text for *_, text in store.room_history("#big", 10, 0)] == ["a new room of the old name"]


def test_a_dropped_rooms_deletion_that_the_disk_refuses_ends_quietly_and_a_restart_finishes_it(
    tmp_path, open_store, monkeypatch
):
    """The deletion's greenlet ends without a traceback when the store cannot write (its log
    says why once); the rows stay out of every read, and the next start deletes them."""
    path = tmp_path / "db"
    store = open_store(path)
    for number in range(1, 11):
        store.record_room("#big", number, "alice", f"wave {number}", now_ms())

    def refused(db, room, upto):
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patched:
        patched.setattr(sqlite_rooms, "_delete_chunk", refused)
        with gevent.Timeout(WAIT):
            store.delete_room("#big")
            (deleting,) = list(store._deleting)
            deleting.join()
            assert deleting.successful()
            assert store.room_history("#big", 10, 0) == []
    open_store.close(store)
    assert room_rows(path, "#big") == 10
    open_store(path)
    eventually(lambda: room_rows(path, "#big") == 0 and not dropped_marks(path), what="the rows deleted")


def test_the_hourly_expiry_goes_on_after_a_round_the_disk_refused(tmp_path, open_store, monkeypatch):
    from chatroom.server.storage import sqlite_store

    monkeypatch.setattr(sqlite_store, "EXPIRY_INTERVAL", 0.01)
    rounds = []

    def expire_chunk(self, db):
        rounds.append(1)
        if len(rounds) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return False

    monkeypatch.setattr(sqlite_store.SQLiteStore, "_expire_chunk", expire_chunk)
    store = open_store(tmp_path / "db")
    eventually(lambda: len(rounds) >= 3, what="expiry rounds after a refused one")
    assert not store._expiry.dead
