"""The server's log lines: their formats, and how they leave (once per turn of the event
loop, in order, at once from other threads), without a server."""

import datetime
import io
import json
import logging
import threading
import time

import gevent
import pytest

from chatroom.server.operations.logs import JsonFormatter, TextFormatter, TurnBufferedHandler, fields


class Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self):
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)


@pytest.fixture
def logged():
    """(a logger, the stream its handler writes to)."""
    stream = Writes()
    handler = TurnBufferedHandler()
    handler.setStream(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("tests.logs")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def test_the_lines_of_a_turn_of_the_loop_leave_together_in_order(logged):
    logger, stream = logged
    for n in range(3):
        logger.info("line %d", n)
    assert stream.writes == []  # (at the end of the turn)
    gevent.sleep(0)
    logger.info("line 3")
    gevent.sleep(0)
    assert stream.writes == ["line 0\nline 1\nline 2\n", "line 3\n"]


def test_a_line_from_another_thread_leaves_at_once_behind_those_waiting(logged):
    logger, stream = logged
    logger.info("from the loop")
    thread = threading.Thread(target=logger.warning, args=("from a thread",))
    thread.start()
    thread.join(5)
    assert stream.writes == ["from the loop\nfrom a thread\n"]
    gevent.sleep(0)
    assert stream.writes == ["from the loop\nfrom a thread\n"]  # (nothing twice)


def test_flush_writes_what_waits(logged):
    """(logging.shutdown flushes every handler at the process's exit.)"""
    logger, stream = logged
    logger.info("the last words")
    logger.handlers[0].flush()
    assert stream.writes == ["the last words\n"]


def record(created: float, **extra) -> logging.LogRecord:
    made = logging.LogRecord("chatroom.x", logging.INFO, __file__, 1, "login %s", ("alice",), None)
    made.created, made.msecs = created, (created - int(created)) * 1000
    made.__dict__.update(extra)
    return made


def test_the_times_are_as_the_standard_formats_make_them_second_after_second():
    text, in_json = TextFormatter(), JsonFormatter()
    standard = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    start = time.time()
    for created in (start, start + 0.5, start + 1.25, start + 3600.999, start + 1.001):
        line = record(created, **fields("login", name="alice"))
        assert text.format(line) == standard.format(line)
        entry = json.loads(in_json.format(line))
        moment = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
        assert entry == {
            "time": moment.isoformat(timespec="milliseconds"),
            "level": "INFO",
            "event": "login",
            "message": "login alice",
            "name": "alice",
        }
