"""Log lines: text for a person at a terminal, or one JSON object per line for a machine.

A log call may name its event and fields (``extra=fields("login", name=..., peer=...)``); the
text format ignores them, the JSON one puts them first-class beside the message. JSON escapes
everything outside printable ASCII, so no name from the network can do anything to a reader's
terminal or parser.

A server logs every connection and login at INFO, the default: what a line costs is paid a few
times per connection. Lines leave once per turn of the event loop (TurnBufferedHandler), and a
record is made without what no format here shows (where the call was, the process and thread).
"""

import json
import logging
import time

import gevent
from gevent.monkey import get_original

TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"

# The real thread's, where gevent patched threading (a cluster's process).
_thread_id, _ThreadLock = get_original("_thread", "get_ident"), get_original("threading", "RLock")


def fields(event: str, **values) -> dict:
    """The ``extra`` of a log call: its event's name and fields."""
    return {"event": event, "fields": values}


class _Seconds:
    """A time's text up to its second, made once a second (localtime and strftime cost more
    than the rest of a log line)."""

    def __init__(self, make):
        self._make = make  # whole seconds since the epoch -> their text
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, self._make(second)
        return self._text


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__(TEXT_FORMAT)
        self._seconds = _Seconds(lambda second: time.strftime(self.default_time_format, time.localtime(second)))

    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:
        return f"{self._seconds(record.created)},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    def __init__(self):
        super().__init__()
        self._seconds = _Seconds(lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": f"{self._seconds(record.created)}.{int(record.msecs):03d}+00:00",
            "level": record.levelname,
            "event": getattr(record, "event", None) or record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


class TurnBufferedHandler(logging.StreamHandler):
    """A StreamHandler whose lines, logged in the event loop's thread, leave together at the
    end of the loop's turn, in one write: a write each was a system call each. A line from
    another thread (the database's writer) leaves at once, behind those waiting; so do all at
    the process's exit (logging.shutdown flushes)."""

    def __init__(self):
        super().__init__()
        self._waiting: list[str] = []
        self._loop_thread = _thread_id()

    def createLock(self) -> None:
        # A thread's lock, even where gevent patched threading: the flush at the end of a turn
        # runs in the hub, which cannot wait as a greenlet does. It is held only while a line
        # is put in or written, never across a switch.
        self.lock = _ThreadLock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)
        if _thread_id() != self._loop_thread:
            self._write_waiting()
        elif len(self._waiting) == 1:
            gevent.get_hub().loop.run_callback(self.flush)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_waiting()
        finally:
            self.release()

    def _write_waiting(self) -> None:
        lines, self._waiting = self._waiting, []
        if lines and self.stream is not None:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:  # (as StreamHandler: a log that cannot be written must not stop the server)
                self.handleError(logging.makeLogRecord({"msg": lines[0].rstrip()}))


def configure(level: str, log_format: str) -> None:
    # None of the formats shows where a call was made, nor the process or the thread: finding
    # the caller walks the stack, and the others are a call each, for every record.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = TurnBufferedHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler])
