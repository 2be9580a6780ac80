"""A chat server and a terminal client as processes, with their logs at hand."""

import os
import re
import signal
import sys
import tempfile

import gevent
from gevent import subprocess

from .waiting import WAIT, eventually

SERVER_COMMAND = (sys.executable, "-m", "chatroom.server", "--host", "127.0.0.1")
_LISTENING = re.compile(rb"Listening on \S+:(\d+)")


class ServerProcess:
    """A chat server started as a subprocess on a free port of 127.0.0.1.

    By default chatroom-server with ``args``; ``command`` runs another server that logs
    ``Listening on HOST:PORT`` too (a baseline). Its log goes to a file, not a pipe, so that a
    chatty server never blocks on one nobody reads.
    """

    def __init__(self, *args, command=SERVER_COMMAND, preexec_fn=None, ready_timeout: float = 15.0, data_dir=None):
        """``data_dir``: where the server keeps its database (XDG_DATA_HOME); by default a
        temporary folder of its own, removed when it stops."""
        self._log = tempfile.TemporaryFile()
        self._own_data = None
        if data_dir is None:
            self._own_data = tempfile.TemporaryDirectory(prefix="chatroom-data-")
            data_dir = self._own_data.name
        self.data_dir = str(data_dir)
        port = () if "--port" in args else ("--port", "0")
        self.proc = subprocess.Popen(
            [*command, *port, *args],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=dict(os.environ, PYTHONUNBUFFERED="1", XDG_DATA_HOME=self.data_dir),
            preexec_fn=preexec_fn,
        )
        try:
            self.port = int(eventually(self._listening_port, timeout=ready_timeout, interval=0.02))
        except BaseException:
            self.stop()
            raise
        self.address = ("127.0.0.1", self.port)

    def _listening_port(self):
        match = _LISTENING.search(self.log_bytes())
        if match:
            return match.group(1)
        assert self.proc.poll() is None, f"server exited early: {self.log_text()}"
        return None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_bytes(self) -> bytes:
        return os.pread(self._log.fileno(), os.fstat(self._log.fileno()).st_size, 0)

    def log_text(self) -> str:
        return self.log_bytes().decode(errors="replace")

    def wait_for_log(self, text: str, timeout: float = WAIT) -> None:
        eventually(lambda: text in self.log_text(), timeout=timeout)

    def signal(self, signum=signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = WAIT) -> int:
        """Exit status, once the process has ended."""
        return self.proc.wait(timeout)

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after timeout seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        if self._own_data is not None:
            self._own_data.cleanup()


class ClientProcess:
    """chatroom-client run as a subprocess with pipes (its non-interactive mode)."""

    def __init__(self, address, *args, env: dict | None = None):
        host, port = address
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatroom.client", host, str(port), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
        )

    def send(self, *lines: str) -> None:
        self.proc.stdin.write(b"".join(line.encode() + b"\n" for line in lines))
        self.proc.stdin.flush()

    def read_line(self, timeout: float = WAIT) -> str:
        with gevent.Timeout(timeout, AssertionError("no line from the client in time")):
            line = self.proc.stdout.readline()
        assert line, "the client's stdout closed"
        return line.decode().removesuffix("\n")

    def read_lines(self, n: int) -> list:
        return [self.read_line() for _ in range(n)]

    def run(self, *lines: str) -> list:
        """Send lines, each answered by exactly one output line; return the answers."""
        self.send(*lines)
        return self.read_lines(len(lines))

    def finish(self, timeout: float = WAIT, close_stdin: bool = True):
        """(status, rest of stdout, all of stderr) once the client exits."""
        if not close_stdin:
            self.proc.wait(timeout)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def assert_clean_log(log: str) -> None:
    """A server's log after hostile or broken input: no traceback and no ERROR line (an
    expected condition gets an INFO or WARNING line, not an error)."""
    assert "Traceback" not in log and " ERROR " not in log and '"level": "ERROR"' not in log, log[-3000:]
