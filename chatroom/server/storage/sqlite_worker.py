"""The thread that owns the SQLite connection: writes in batches, reads in order, and an
acknowledgement only once what it acknowledges is committed.

Nothing here touches the disk on the hub. Writes are gathered on the hub and handed, once per
round of the event loop, as one batch to the worker thread, which commits the batch in one
transaction (group commit: while it commits, the next batch gathers, over as many rounds as
the commit takes, unless someone waits for it; history for an idle thread gathers for
HISTORY_GATHER since the last handover, not a round). A caller that must not answer before its write
is on disk (an account, a kept message) waits for its batch's commit and learns whether it
failed; history is written behind the relay, through a queue bounded in bytes and in time
that makes senders wait rather than grow: while the oldest batch the thread has not finished
was handed to it more than HISTORY_LAG ago, a sender's next history write waits, so what was
answered is committed within about twice that (what a kill -9 can lose). Reads go through the
same thread, after every write queued before them, so a reader always sees what the server
has acknowledged.

Many rows of one statement (the history's) go to SQLite as few INSERTs of many rows each: see
multirow.py.

Where _batch_writer.c was built, a batch goes to SQLite through it instead, on a connection of
its own to the same file: the values read once, and SQLite's whole work for the batch done
without the interpreter's lock, so that the thread and the hub no longer take turns.

When a batch cannot be committed (a full disk, an I/O error), the requests waiting on it get
StoreUnavailable, the store reports itself unhealthy, and the log says so once, and once more
when writing works again.
"""

import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
from gevent.event import Event
from gevent.monkey import get_original

from .multirow import insert_rows, statement_shapes
from .store import StoreUnavailable

if TYPE_CHECKING:
    from ._batch_writer import BatchWriter

try:
    from . import _batch_writer as compiled  # (built from _batch_writer.c where the install could)
except ImportError:
    compiled = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# The real thread and queue, even in a process that monkey-patched them.
_start_thread = get_original("_thread", "start_new_thread")
_SimpleQueue = get_original("queue", "SimpleQueue")
MAX_UNWRITTEN_BYTES = 8 << 20  # history queued for the disk before senders wait
HISTORY_LAG = 0.05  # seconds the thread may be behind before senders of history wait
HISTORY_GATHER = 0.02  # seconds history gathers between handovers (a transaction's cost is mostly its own)
RECOVERED_AFTER = 20  # commits in a row after a failure before the log says writing works again


class _Batch:
    """Writes that go in one transaction, and how it went."""

    __slots__ = ("writes", "bulk", "then", "size", "durable", "committed", "error", "handed_at")

    def __init__(self):
        self.writes: list = []  # (sql, parameters)
        self.bulk: dict[str, list] = {}  # sql -> its rows, written after the writes, at one go
        self.then: dict[str, tuple[str, ...]] = {}  # sql -> what follows its rows (see write_bulk)
        self.size = 0  # bytes of text in it, for the bound
        self.durable = False  # someone waits for it: commit with a full sync
        self.committed = Event()  # set on the hub once the thread is done with it
        self.error: str | None = None
        self.handed_at = 0.0  # when it went to the thread (the event loop's clock)


class SQLiteWorker:
    reads_only = False  # (sqlite_reader's: a connection that may not write)

    def __init__(self, path, max_unwritten_bytes: int = MAX_UNWRITTEN_BYTES):
        self.path = path
        self.healthy = True  # the last batch was committed
        self._outage_said = False  # the log has said writing fails, and not yet that it works again
        self._writes_since_failure = 0
        self._max_unwritten = max_unwritten_bytes
        self._jobs = _SimpleQueue()  # for the thread: a _Batch, a call, or None to stop
        self._db: sqlite3.Connection | None = None  # the thread's own
        self._batches: BatchWriter | None = None  # the thread's, where there is one (see _open)
        self._gathering = _Batch()
        self._flush_due = False
        self._handed_at = float("-inf")  # the last handover (the event loop's clock)
        self._gather_timer = None  # a timer while history gathers (see _hand_over_history)
        self._unwritten = 0  # bytes handed over or gathered, not yet committed
        self._in_flight: deque[_Batch] = deque()  # handed to the thread, oldest first
        self._loop = gevent.get_hub().loop
        self._room = Event()  # set whenever the thread finishes a batch within the bounds
        self._room.set()
        self._done = gevent.get_hub().loop.async_()  # the thread's way to wake the hub
        self._finished = _SimpleQueue()  # batches the thread is done with, for the hub

    def start(self, opener: Callable[[sqlite3.Connection], object]):
        """Open the database in the thread; opener(db) prepares it (schema, migrations) and
        its result is returned."""
        self._done.start(self._on_batches_done)
        _start_thread(self._work, ())
        return self.call(self._open, opener)

    def stop(self) -> None:
        """Commit what is queued, then close."""
        if self._gather_timer is not None:
            self._gather_timer.close()
        self.flush()
        self.call(self._close)
        self._jobs.put(None)
        self._done.close()

    # --- On the hub -------------------------------------------------------------------------

    def write(self, sql: str, parameters: tuple, size: int = 0) -> None:
        """Queue a write that nobody waits for (history); a caller may wait for room first."""
        self._gather(size).writes.append((sql, parameters))

    def write_bulk(self, sql: str, parameters: tuple, size: int = 0, then: tuple[str, ...] = ()) -> None:
        """Queue a row for sql that nobody waits for, to be written with the other rows of the
        same sql in the batch at one go (history: many rows of one statement), after the
        batch's other writes; first, a caller faster than the disk waits (see wait_for_room).
        ``then``: statements to run once the batch's rows of sql are written, each with the
        least and the greatest first parameter of those rows (their keys: the search index is
        filled from the rows just written, without their text crossing to the thread twice)."""
        if self._too_far_behind():
            self.wait_for_room()
        batch = self._gather(size)
        rows = batch.bulk.get(sql)
        if rows is None:
            batch.bulk[sql] = [parameters]
            if then:
                batch.then[sql] = then
        else:
            rows.append(parameters)

    def write_and_wait(self, sql: str, *rows: tuple) -> None:
        """Queue the write of each row (in one transaction) and wait for its commit;
        StoreUnavailable if it failed."""
        batch = self._gather(0)
        batch.writes += [(sql, parameters) for parameters in rows]
        batch.durable = True
        batch.committed.wait()
        if batch.error is not None:
            raise StoreUnavailable(batch.error)

    def wait_for_room(self) -> None:
        """Wait while the thread is too far behind (see _too_far_behind)."""
        while self._too_far_behind():
            self._room.clear()
            self._room.wait()

    def _too_far_behind(self) -> bool:
        """More than the bound of history queued for the disk, or the thread HISTORY_LAG behind."""
        in_flight = self._in_flight
        return self._unwritten > self._max_unwritten or (
            bool(in_flight) and self._loop.now() - in_flight[0].handed_at > HISTORY_LAG
        )

    def call(self, function, *args):
        """function(db, *args) in the thread, after every write queued before it; the calling
        greenlet waits, the hub does not. A SQLite error becomes StoreUnavailable."""
        self.flush()
        done = Event()
        watcher = gevent.get_hub().loop.async_()
        watcher.start(done.set)
        outcome: list = []
        try:
            self._jobs.put((function, args, outcome, watcher))
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

    def wait_until_written(self) -> None:
        """Wait until all queued so far is committed (or failed): for another connection's read."""
        self.flush()
        if self._in_flight:
            self._in_flight[-1].committed.wait()  # (the thread commits the batches in order)

    def flush(self) -> None:
        """Hand what has gathered to the thread now."""
        self._flush_due = False
        batch = self._gathering
        if batch.writes or batch.bulk:
            self._gathering = _Batch()
            batch.handed_at = self._handed_at = self._loop.now()
            self._in_flight.append(batch)
            self._jobs.put(batch)

    def _gather(self, size) -> _Batch:
        """The batch gathering now, for a write of size bytes of text (the bound counts them)."""
        batch = self._gathering
        batch.size += size
        self._unwritten += size
        if not self._flush_due:
            self._flush_due = True
            # Everything queued in this round of the event loop goes in one transaction...
            self._loop.run_callback(self._flush_when_free)
        return batch

    def _flush_when_free(self) -> None:
        # ...or, while the thread is still at the batch before, in the next one: what nobody
        # waits for gathers on until then. One transaction for many rounds' rows writes each
        # page it touches (a conversation's index entries, the search index's new segment)
        # once instead of once a round: the commit is most of what a row costs.
        self._flush_due = False
        if self._gathering.durable:
            self.flush()
        elif not self._in_flight:
            self._hand_over_history()

    def _hand_over_history(self) -> None:
        """Hand history to the idle thread, once HISTORY_GATHER has passed since the last
        handover: at a few rows a round, a transaction a round cost far more per row."""
        wait = self._handed_at + HISTORY_GATHER - self._loop.now()
        if wait <= 0:
            self.flush()
        elif self._gather_timer is None:
            timer = self._gather_timer = self._loop.timer(wait)
            timer.start(self._gathered, timer)

    def _gathered(self, timer) -> None:
        timer.close()
        self._gather_timer = None
        if not self._in_flight:
            self.flush()

    def _on_batches_done(self) -> None:
        while not self._finished.empty():
            batch = self._finished.get()
            self._in_flight.popleft()  # (the thread takes batches in order)
            self._unwritten -= batch.size
            self._note_outcome(batch)
            batch.committed.set()
        if not self._in_flight:
            self._hand_over_history()  # (what gathered meanwhile)
        if not self._too_far_behind():
            self._room.set()

    def _note_outcome(self, batch: _Batch) -> None:
        """Say once that writing fails, and once that it works again: a full disk lets a small
        write through now and then, which is not yet recovery (RECOVERED_AFTER commits in a row
        are)."""
        if batch.error is not None:
            self.healthy = False
            self._writes_since_failure = 0
            if not self._outage_said:
                self._outage_said = True
                log.error(
                    "database %s cannot write (%s): what needs it fails until it can; said once", self.path, batch.error
                )
            return
        self.healthy = True
        self._writes_since_failure += 1
        if self._outage_said and self._writes_since_failure >= RECOVERED_AFTER:
            self._outage_said = False
            log.warning("database %s: writing works again", self.path)

    # --- In the thread ----------------------------------------------------------------------

    def _work(self):
        """The thread: jobs in the order they were queued."""
        while (job := self._jobs.get()) is not None:
            if isinstance(job, _Batch):
                self._commit(job)
                self._finished.put(job)
                self._done.send()  # thread-safe: wakes the hub
            else:
                function, args, outcome, watcher = job
                try:
                    outcome.append((True, function(self._db, *args)))
                except BaseException as err:  # handed to the waiting greenlet
                    outcome.append((False, err))
                watcher.send()  # thread-safe: wakes the hub

    def _commit(self, batch: _Batch) -> None:
        db = self._db
        assert db is not None
        try:
            if self._batches is not None:
                shapes = {sql: statement_shapes(sql) for sql in batch.bulk}
                self._batches.commit(batch.writes, batch.bulk, shapes, batch.then, batch.durable)  # (the same, in C)
                return
            # Only what someone was told is stored must reach the disk before the answer:
            # history may wait for the next checkpoint (WAL: it is never corrupted).
            db.execute(f"PRAGMA synchronous={'FULL' if batch.durable else 'NORMAL'}")
            db.execute("BEGIN")
            for sql, parameters in batch.writes:
                db.execute(sql, parameters)
            for sql, rows in batch.bulk.items():
                insert_rows(db, sql, rows)
                then = batch.then.get(sql)
                if then:
                    keys = [row[0] for row in rows]
                    for statement in then:
                        db.execute(statement, (min(keys), max(keys)))
            db.execute("COMMIT")
        except Exception as err:
            # The batch fails, the thread goes on: a thread gone would leave every later
            # write waiting for ever. Only SQLite's own errors are expected here.
            if not isinstance(err, sqlite3.Error):
                log.exception("database %s: a batch could not be written", self.path)
            batch.error = str(err)
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass

    def _open(self, _db, opener):
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA query_only=1" if self.reads_only else "PRAGMA journal_mode=WAL")
            prepared = opener(db)
            db.execute("PRAGMA temp_store=MEMORY")  # (see _batch_writer.c; a migration's may be large)
        except BaseException:
            db.close()
            raise
        self._db = db
        writes_a_file = a_file(self.path) and not self.reads_only
        if compiled is not None and writes_a_file and compiled.sqlite_in_common(sqlite3.sqlite_version):
            self._batches = compiled.BatchWriter(self.path)  # (after the schema: it only writes)
        return prepared

    def _close(self, db):
        if self._batches is not None:
            self._batches.close()
            self._batches = None
        if db is not None:
            db.close()
            self._db = None


def a_file(path) -> bool:
    """Whether path names a file another connection opens too (not an in-memory database)."""
    return str(path) not in ("", ":memory:") and not str(path).startswith("file:")
