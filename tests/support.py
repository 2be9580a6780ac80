"""Test helpers: a protocol-speaking peer over a real socket, and a server run as a process."""

import os
import re
import signal
import sys

import gevent
from gevent import socket, subprocess

from chatroom.codec import Decoder, encode
from chatroom.protocol import Login, Response, Status

WAIT = 5.0  # the bound on any single wait in a test
OK_BYTES = b"\x82\x00\x00\x00\x01\x00"
FAILURE_BYTES = b"\x82\x00\x00\x00\x01\x01"
MALFORMED_BYTES = b"\x82\x00\x00\x00\x01\x02"
OK = Response(Status.OK)
FAILURE = Response(Status.FAILURE)
MALFORMED = Response(Status.MALFORMED)


class Peer:
    """A raw protocol client: send messages or bytes, read decoded events or exact bytes."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=WAIT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder.for_client()
        self.events = []

    def send(self, *messages):
        self.sock.sendall(b"".join(encode(m) for m in messages))

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        """Exactly n raw bytes (bypassing the decoder)."""
        chunks = []
        with gevent.Timeout(WAIT):
            while n:
                chunk = self.sock.recv(n)
                assert chunk, "connection closed while bytes were expected"
                chunks.append(chunk)
                n -= len(chunk)
        return b"".join(chunks)

    def next_event(self):
        with gevent.Timeout(WAIT):
            while not self.events:
                data = self.sock.recv(65536)
                assert data, "connection closed while a frame was expected"
                self.events.extend(self.decoder.receive_data(data))
        return self.events.pop(0)

    def request(self, message):
        """Send one message and return the next event (its reply, if nothing else is due)."""
        self.send(message)
        return self.next_event()

    def login(self, name):
        assert self.request(Login(name)) == OK

    def assert_closed(self):
        """The server closes this connection (EOF or reset) within the wait bound."""
        with gevent.Timeout(WAIT):
            while True:
                try:
                    if not self.sock.recv(65536):
                        return
                except ConnectionResetError:
                    return

    def close(self):
        self.sock.close()


def eventually(check, timeout=WAIT, interval=0.01):
    """Poll check() until it returns a true value, failing after timeout seconds."""
    with gevent.Timeout(timeout, AssertionError(f"condition never held: {check}")):
        while True:
            result = check()
            if result:
                return result
            gevent.sleep(interval)


class ServerProcess:
    """chatroom-server started as a subprocess on 127.0.0.1 with a free port.

    Its log (stderr) is read all along, so that a chatty server never blocks on a full pipe.
    """

    def __init__(self, *args, preexec_fn=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatroom.server", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            preexec_fn=preexec_fn,
        )
        self.log = []
        self.port = None
        with gevent.Timeout(15, AssertionError("server never said it was listening")):
            while self.port is None:
                line = self.proc.stderr.readline()
                assert line, f"server exited early: {''.join(self.log)}"
                self.log.append(line)
                match = re.search(r"Listening on \S+:(\d+)", line)
                if match:
                    self.port = int(match.group(1))
        self.address = ("127.0.0.1", self.port)
        self._log_reader = gevent.spawn(self._read_log)

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line)

    @property
    def pid(self):
        return self.proc.pid

    def log_text(self) -> str:
        return "".join(self.log)

    def wait_for_log(self, text):
        eventually(lambda: text in self.log_text())

    def signal(self, signum=signal.SIGTERM):
        self.proc.send_signal(signum)

    def wait(self, timeout=WAIT) -> int:
        """Exit status, once the process has ended and its whole log is read."""
        status = self.proc.wait(timeout)
        self._log_reader.join(timeout)
        return status

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log_reader.kill()


class ClientProcess:
    """chatroom-client run as a subprocess with pipes (its non-interactive mode)."""

    def __init__(self, address, *args):
        host, port = address
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatroom.client", host, str(port), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )

    def send(self, *lines):
        self.proc.stdin.write(b"".join(line.encode() + b"\n" for line in lines))
        self.proc.stdin.flush()

    def read_line(self, timeout=WAIT) -> str:
        with gevent.Timeout(timeout, AssertionError("no line from the client in time")):
            line = self.proc.stdout.readline()
        assert line, "the client's stdout closed"
        return line.decode().removesuffix("\n")

    def read_lines(self, n) -> list:
        return [self.read_line() for _ in range(n)]

    def run(self, *lines) -> list:
        """Send lines, each answered by exactly one output line; return the answers."""
        self.send(*lines)
        return self.read_lines(len(lines))

    def finish(self, timeout=WAIT, close_stdin=True):
        """(status, rest of stdout, all of stderr) once the client exits."""
        if not close_stdin:
            self.proc.wait(timeout)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def rss_kb(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
