"""The history's writer in C (_batch_writer.c) against the Python it stands in for: the same
batches through either leave the same database, a batch that cannot be written leaves nothing
of itself in either, and the C is used only where its SQLite is the sqlite3 module's."""

import random
import sqlite3

import gevent
import pytest

from chatroom.server.storage import sqlite_worker
from chatroom.server.storage.sqlite_worker import SQLiteWorker
from chatroom.server.storage.store import StoreUnavailable
from chatroom.testing import WAIT

pytestmark = pytest.mark.skipif(sqlite_worker.compiled is None, reason="_batch_writer.c was not built here")

SCHEMA = """
    CREATE TABLE rows (key INTEGER PRIMARY KEY, name TEXT, amount REAL, data BLOB, note TEXT CHECK (note != 'refused'));
    CREATE TABLE pairs (a, b);
    CREATE TABLE followed (least INTEGER, greatest INTEGER);
"""
INSERT_ROW = "INSERT INTO rows (key, name, amount, data, note) VALUES (?, ?, ?, ?, ?)"
INSERT_PAIR = "INSERT INTO pairs (a, b) VALUES (?, ?)"
FOLLOW = "INSERT INTO followed VALUES (?, ?)"
TEXTS = ["", "plain", "héllo wörld", "日本語のテキスト", "emoji 🎉", "a\x00b", "x" * 5000]


def open_worker(path, compiled: bool, monkeypatch) -> SQLiteWorker:
    monkeypatch.setattr(sqlite_worker, "compiled", sqlite_worker.compiled if compiled else None)
    worker = SQLiteWorker(path)
    with gevent.Timeout(WAIT):
        worker.start(lambda db: db.executescript(SCHEMA))
    assert (worker._batches is not None) == compiled
    return worker


def contents(worker: SQLiteWorker) -> dict:
    def read(db):
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in ("rows", "pairs", "followed")
        }

    with gevent.Timeout(WAIT):
        return worker.call(read)


def write_batches(worker: SQLiteWorker, seed: int) -> None:
    """Batches of every shape: rows of many types in runs of 1 to 300 (more than one INSERT of
    128 holds, and each remainder), pairs between them, writes before, one waited for."""
    chance = random.Random(seed)
    key = 0
    with gevent.Timeout(WAIT):
        for _ in range(12):
            for _ in range(chance.choice([1, 2, 127, 128, 129, 300])):
                key += chance.randint(1, 3)
                amount, data = chance.choice([None, 0.5, -1e300]), chance.choice([None, b"\x00\xff"])
                row = (key, chance.choice(TEXTS), amount, data, chance.choice([None, "kept"]))
                worker.write_bulk(INSERT_ROW, row, then=(FOLLOW,))
                if chance.random() < 0.3:
                    worker.write_bulk(INSERT_PAIR, (chance.randint(-(2**63), 2**63 - 1), chance.choice(TEXTS)))
            worker.write("DELETE FROM pairs WHERE a < ?", (chance.randint(-(2**63), 0),))
            if chance.random() < 0.3:
                worker.write_and_wait(INSERT_PAIR, ("waited", 1), ("for", 2))
            # One batch a round, whatever the thread's pace (a batch handed over while the thread
            # was still at the one before took the next round's rows too, in one run and not in
            # the other: the followed ranges differed).
            worker.wait_until_written()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_same_batches_leave_the_same_database_written_in_c_or_in_python(tmp_path, monkeypatch, seed):
    written = {}
    for compiled in (True, False):
        worker = open_worker(tmp_path / f"{compiled}.db", compiled, monkeypatch)
        try:
            write_batches(worker, seed)
            written[compiled] = contents(worker)
        finally:
            with gevent.Timeout(WAIT):
                worker.stop()
    assert written[True] == written[False]
    assert len(written[True]["rows"]) > 1000 and written[True]["followed"]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize(
    "refused",
    [
        (INSERT_ROW, (10**6, "a", None, None, "refused")),  # (SQLite's refusal: a CHECK)
        (INSERT_ROW, (10**6, "\ud800", None, None, None)),  # (no UTF-8 for a lone surrogate)
        (INSERT_ROW, (10**6, object(), None, None, None)),  # (nothing SQLite stores)
        (INSERT_ROW, (2**64, "too large a key", None, None, None)),
    ],
)
def test_a_batch_that_cannot_be_written_leaves_nothing_of_itself_and_the_writer_goes_on(
    tmp_path, monkeypatch, compiled, refused
):
    worker = open_worker(tmp_path / "db", compiled, monkeypatch)
    try:
        with gevent.Timeout(WAIT):
            worker.write_and_wait(INSERT_PAIR, ("before", 0))
            worker.write("DELETE FROM pairs", ())
            for key in range(1, 200):
                worker.write_bulk(INSERT_ROW, (key, "fine", None, None, None), then=(FOLLOW,))
            worker.write_bulk(*refused)
            with pytest.raises(StoreUnavailable):
                worker.write_and_wait(INSERT_PAIR, ("in the same batch", 1))
            worker.write_and_wait(INSERT_PAIR, ("after", 2))
        assert contents(worker) == {"rows": [], "pairs": [("before", 0), ("after", 2)], "followed": []}
        assert worker.healthy
    finally:
        with gevent.Timeout(WAIT):
            worker.stop()


def test_a_batch_waits_for_the_lock_another_connection_holds(tmp_path, monkeypatch):
    worker = open_worker(tmp_path / "db", True, monkeypatch)
    other = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO pairs VALUES ('other', 0)")
        with gevent.Timeout(WAIT):
            waiting = gevent.spawn(worker.write_and_wait, INSERT_PAIR, ("mine", 1))
            waiting.join(timeout=0.2)  # (nothing says when the thread is in SQLite's busy wait)
            assert not waiting.ready()  # (it waits there, in the thread: the hub goes on)
            other.execute("COMMIT")
            waiting.get()
        assert contents(worker)["pairs"] == [("other", 0), ("mine", 1)]
    finally:
        other.close()
        with gevent.Timeout(WAIT):
            worker.stop()


def test_the_c_writes_only_through_the_sqlite_of_the_sqlite3_module(tmp_path):
    assert sqlite_worker.compiled.sqlite_in_common(sqlite3.sqlite_version)
    assert not sqlite_worker.compiled.sqlite_in_common("3.0.0")
    worker = SQLiteWorker(":memory:")  # (another connection would open another database)
    with gevent.Timeout(WAIT):
        worker.start(lambda db: db.executescript(SCHEMA))
    try:
        assert worker._batches is None
        with gevent.Timeout(WAIT):
            worker.write_and_wait(INSERT_PAIR, ("in memory", 1))
        assert contents(worker)["pairs"] == [("in memory", 1)]
    finally:
        with gevent.Timeout(WAIT):
            worker.stop()
