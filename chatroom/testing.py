"""Helpers for tests and benchmarks: processes to run, peers that speak raw protocol.

- :class:`ServerProcess` starts chatroom-server (or any server that logs ``Listening on
  HOST:PORT``) and reads its port; :class:`ClientProcess` runs chatroom-client over pipes;
- :class:`RedisProcess` is a throwaway redis-server on loopback, keeping nothing on disk,
  and :class:`RedisClusterProcess` three of them as a Redis Cluster;
- :class:`Peer` is a raw protocol client; :func:`fake_server` a stand-in server;
- :func:`free_port`, :func:`eventually`, :func:`rss_kb`, :func:`cpu_seconds`.

Every wait is bounded (by :data:`WAIT` unless said otherwise), so that a bug fails a test
instead of hanging it.
"""

import itertools
import os
import random
import re
import shutil
import signal
import socket as std_socket
import struct
import sys
import tempfile

import gevent
from gevent import socket, subprocess
from gevent.server import StreamServer

from .codec import Decoder, encode
from .protocol import ListUsers, Login, Logout, Response, SendTo, Status

WAIT = 5.0  # the bound on any single wait in a test
OK_BYTES = b"\x82\x00\x00\x00\x01\x00"
FAILURE_BYTES = b"\x82\x00\x00\x00\x01\x01"
MALFORMED_BYTES = b"\x82\x00\x00\x00\x01\x02"
OK = Response(Status.OK)
FAILURE = Response(Status.FAILURE)
MALFORMED = Response(Status.MALFORMED)
SERVER_COMMAND = (sys.executable, "-m", "chatroom.server", "--host", "127.0.0.1")
_LISTENING = re.compile(rb"Listening on \S+:(\d+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with std_socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def eventually(check, timeout: float = WAIT, interval: float = 0.01, what: str | None = None):
    """Poll check() until it returns a true value (returned), failing after timeout seconds
    (with what, if given, as the thing never seen)."""
    with gevent.Timeout(timeout, AssertionError(f"never saw {what}" if what else f"condition never held: {check}")):
        while True:
            result = check()
            if result:
                return result
            gevent.sleep(interval)


# --- Raw protocol ---------------------------------------------------------------------


class Peer:
    """A raw protocol client: send messages or bytes, read decoded events or exact bytes."""

    def __init__(self, address, receive_buffer: int | None = None, source: str | None = None):
        """``receive_buffer``: a small SO_RCVBUF makes a client whose socket fills quickly;
        ``source``: the local address to connect from (another of 127.0.0.0/8, say)."""
        self.sock = socket.socket()
        if source is not None:
            self.sock.bind((source, 0))
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(WAIT)
        try:
            self.sock.connect(tuple(address))
        except BaseException:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder.for_client()
        self.events: list = []

    def send(self, *messages) -> None:
        self.sock.sendall(b"".join(encode(m) for m in messages))

    def send_raw(self, data: bytes) -> None:
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

    def login(self, name: str) -> None:
        assert self.request(Login(name)) == OK

    def assert_closed(self) -> None:
        """The server closes this connection (EOF or reset) within the wait bound."""
        with gevent.Timeout(WAIT):
            while True:
                try:
                    if not self.sock.recv(65536):
                        return
                except ConnectionResetError:
                    return

    def close(self) -> None:
        self.sock.close()


def logged_in(address, name: str) -> Peer:
    """A Peer connected to address and logged in as name."""
    peer = Peer(address)
    try:
        peer.login(name)
    except BaseException:
        peer.close()
        raise
    return peer


def random_frames(rng: random.Random, count: int) -> bytes:
    """count frames for fuzzing: valid ones, mutated ones and noise, concatenated."""
    valid = [
        encode(Login("name")),
        encode(ListUsers()),
        encode(SendTo("name", "text")),
        encode(Logout()),
        encode(SendTo("name", "é" * 50)),
    ]
    out = bytearray()
    for _ in range(count):
        choice = rng.random()
        if choice < 0.3:
            frame = bytearray(rng.choice(valid))
            for _ in range(rng.randint(1, 3)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            out += frame
        elif choice < 0.5:
            body = rng.randbytes(rng.randint(0, 40))
            out += struct.pack("!BI", rng.randrange(256), len(body)) + body
        elif choice < 0.6:
            out += rng.randbytes(rng.randint(1, 30))
        else:
            out += rng.choice(valid)
    return bytes(out)


def random_websocket_frames(rng: random.Random, count: int) -> bytes:
    """count WebSocket frames, as a client would send them after the handshake, for fuzzing:
    well-formed binary messages carrying random_frames, and frames that break the rules
    (text, fragments, control frames of any size, reserved bits, unmasked, false lengths),
    mutated headers and noise, concatenated."""
    from .websocket_client import binary_frame

    out = bytearray()
    for _ in range(count):
        choice = rng.random()
        payload = random_frames(rng, 1) if rng.random() < 0.7 else rng.randbytes(rng.randint(0, 300))
        if choice < 0.4:
            out += binary_frame(payload, rng.randbytes(4))
        elif choice < 0.7:
            first = rng.choice([0x80, 0x00]) | rng.choice([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xF])
            first |= rng.choice([0, 0, 0, 0x40, 0x20, 0x10])  # now and then a reserved bit
            masked = rng.random() < 0.9
            size = len(payload)
            if size < 126 and rng.random() < 0.8:
                head = bytes((first, (0x80 if masked else 0) | size))
            else:
                claimed = rng.choice([size, size + 1, rng.randrange(1 << 16), rng.randrange(1 << 40)])
                head = bytes((first, (0x80 if masked else 0) | 127)) + claimed.to_bytes(8, "big")
            out += head + (rng.randbytes(4) if masked else b"") + payload
        elif choice < 0.9:
            frame = bytearray(binary_frame(payload, rng.randbytes(4)))
            for _ in range(rng.randint(1, 3)):
                frame[rng.randrange(min(len(frame), 8))] = rng.randrange(256)
            out += frame
        else:
            out += rng.randbytes(rng.randint(1, 40))
    return bytes(out)


def greet_as_old_server(sock) -> None:
    """For a fake server's handler: take the client's HELLO and answer it as a server without
    the extension does (MALFORMED), so that what follows is the seed protocol."""
    hello = b""
    with gevent.Timeout(WAIT):
        while len(hello) < 6:
            chunk = sock.recv(6 - len(hello))
            if not chunk:
                return
            hello += chunk
    assert hello[0] == 0x05, hello
    sock.sendall(MALFORMED_BYTES)


def fake_server(handler) -> StreamServer:
    """A started StreamServer on 127.0.0.1 (any free port) running handler(sock) for each
    connection: a stand-in for a chat server that misbehaves on purpose."""
    server = StreamServer(("127.0.0.1", 0), lambda sock, _address: handler(sock))
    server.start()
    return server


# --- Processes ------------------------------------------------------------------------


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

    def __init__(self, address, *args):
        host, port = address
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatroom.client", host, str(port), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
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


def redis_server_binary() -> str:
    """Debian's redis-server (7 or newer: cluster mode needs sharded pub/sub)."""
    found = shutil.which("redis-server")
    if not found:
        raise FileNotFoundError("no redis-server: install Debian's redis-server package (./scripts/test does)")
    return found


class RedisProcess:
    """redis-server on 127.0.0.1 and a free port, in ``folder``, without persistence; with
    ``cluster``, a node of a Redis Cluster (see RedisClusterProcess).

    Raises FileNotFoundError when there is no redis-server to run.
    """

    def __init__(self, folder, cluster: bool = False):
        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.options = ["--save", "", "--appendonly", "no", "--dir", self.folder]
        if cluster:
            self.bus_port = free_port()
            self.options += ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port)]
        self.start()

    def start(self, timeout: float = 10.0) -> None:
        """Start (again, after stop(): empty, as a restarted Redis without persistence; a
        cluster node keeps its place in the cluster, which it saves apart from the data)."""
        command = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", *self.options]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers():
            assert self.proc.poll() is None, "redis-server exited early"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return False
            return True

        eventually(answers, timeout=timeout, interval=0.05)

    def client(self):
        """A redis-py client of this server."""
        import redis

        return redis.Redis(port=self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(WAIT)

    close = stop


class RedisClusterProcess:
    """A Redis Cluster of three masters (no replicas) on loopback, without persistence.

    ``url`` is the address of a master that does *not* serve the chat directory's slot, so
    that a node must find the one that does. ``stop``, ``start``, ``proc`` and ``client``
    act on that directory master (whose loss is what the nodes notice), as they would on a
    single RedisProcess; ``close`` stops them all.
    """

    SLOT_COUNT = 16384

    def __init__(self, folder, masters: int = 3, timeout: float = 10.0):
        from redis.cluster import key_slot

        from .server.presence.cluster.scripts import USERS  # a key in the slot of the whole directory

        self.masters = []
        self.replicas: list[RedisProcess] = []
        for index in range(masters):
            self.masters.append(RedisProcess(os.path.join(folder, f"master{index}"), cluster=True))
        clients = [master.client() for master in self.masters]
        bounds = [index * self.SLOT_COUNT // masters for index in range(masters + 1)]
        slot_ranges = [(first, after - 1) for first, after in itertools.pairwise(bounds)]
        for client, (first, last) in zip(clients, slot_ranges, strict=True):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for master in self.masters[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", master.port, master.bus_port)
        for client in clients:
            client.close()
        self.wait_until_formed(timeout)
        directory_slot = key_slot(USERS.encode())
        owner = next(i for i, (first, last) in enumerate(slot_ranges) if first <= directory_slot <= last)
        self.directory_master = self.masters[owner]
        self.url = self.masters[(owner + 1) % masters].url

    def wait_until_formed(self, timeout: float = 10.0) -> None:
        """Wait until every master sees them all and every slot served (a master that has
        just started holds back for two seconds: Redis's own writable delay)."""

        def formed():
            for master in self.masters:
                with master.client() as client:
                    info = client.cluster("info")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(self.masters):
                    return False
            return True

        eventually(formed, timeout=timeout, interval=0.05)

    def reset(self) -> None:
        """Empty every master (restarting any that is down), as a fresh cluster would be."""
        for master in self.masters:
            if master.proc.poll() is not None:
                master.start()
            master.proc.send_signal(signal.SIGCONT)  # in case a test left it paused
            with master.client() as client:
                client.flushall()
        self.wait_until_formed()

    def add_replica(self, folder, timeout: float = 10.0) -> RedisProcess:
        """Start a replica of the directory's master and wait until it has the data."""
        replica = RedisProcess(folder, cluster=True)
        with self.directory_master.client() as master:
            master.execute_command("CLUSTER", "MEET", "127.0.0.1", replica.port, replica.bus_port)
            master_id = master.execute_command("CLUSTER", "MYID")
        with replica.client() as client:
            eventually(lambda: len(client.execute_command("CLUSTER", "NODES").splitlines()) > len(self.masters))
            client.execute_command("CLUSTER", "REPLICATE", master_id)
            eventually(lambda: client.info("replication").get("master_link_status") == "up", timeout=timeout)
        self.replicas.append(replica)
        return replica

    @property
    def proc(self):
        return self.directory_master.proc

    def start(self, timeout: float = 10.0) -> None:
        self.directory_master.start(timeout)

    def stop(self) -> None:
        self.directory_master.stop()

    def client(self):
        return self.directory_master.client()

    def cluster_client(self):
        """A redis-py cluster client, for keys in any slot."""
        import redis

        return redis.RedisCluster.from_url(self.url)

    def close(self) -> None:
        for server in self.masters + self.replicas:
            server.stop()


# --- Measures of a process ------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
