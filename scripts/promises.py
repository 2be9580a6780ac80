"""Reliability figures for the promises round 3 made, each against a fresh server on 127.0.0.1
(used by scripts/reliability.py, which writes them into docs/reliability.md):

- a WebSocket flood (pings, empty fragments) beside a TCP neighbour: its latency with and
  without the flood, and how soon the flooders are closed;
- a room flood (senders keeping messages in flight to a room of 1000) beside a TCP
  neighbour: its latency meanwhile;
- kill -9 under load: what was answered STORED and REGISTER-OK, and what is still there after
  a restart; the history the kill lost, against what was answered in the moment before it;
- a burst of password guesses from many addresses: how many were hashed, and how soon the
  owner gets in.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import gevent
from gevent import socket
from gevent.event import Event
from wsproto import ConnectionType, WSConnection
from wsproto.events import BytesMessage, CloseConnection, Ping, Request

from chatroom.protocol import (
    Authenticate,
    Hello,
    HistoryPage,
    HistoryRequest,
    ListUsers,
    Register,
    Response,
    SendTo,
    Status,
    StoredMessage,
)
from chatroom.testing import OK, Peer, ServerProcess, extended, free_port

STORED = Response(Status.STORED)


def _latencies(peer, count) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        peer.request(ListUsers())
        times.append(time.perf_counter() - started)
    return sorted(times)


def _percentile(values, share) -> float:
    return values[min(len(values) - 1, int(len(values) * share))] * 1000


def _flooder(address, frames_of) -> float:
    """Open a WebSocket and flood it with frames_of(ws); seconds until the server closed it."""
    host, port = address
    sock = socket.create_connection(address, timeout=10)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(
        ws.send(Request(host=f"{host}:{port}", target="/chat", extra_headers=[("Origin", f"http://{host}:{port}")]))
    )
    ws.receive_data(sock.recv(65536))
    list(ws.events())
    burst = frames_of(ws)
    started = time.monotonic()
    closed = Event()

    def watch():
        while data := sock.recv(65536):
            ws.receive_data(data)
            if any(isinstance(event, CloseConnection) for event in ws.events()):
                break
        closed.set()

    watcher = gevent.spawn(watch)
    try:
        with gevent.Timeout(10, False):
            while not closed.is_set():
                sock.sendall(burst)
    except OSError:
        pass
    closed.wait(10)
    watcher.kill()
    sock.close()
    return time.monotonic() - started


FLOODS = {
    "pings": lambda ws: b"".join(ws.send(Ping(b"x" * 16)) for _ in range(1000)),
    "empty fragments": lambda ws: b"".join(ws.send(BytesMessage(b"", message_finished=False)) for _ in range(1000)),
}


def _flood_process(port: int, kind: str, connections: int, again: bool) -> subprocess.Popen:
    """Flooders in a process of their own (in this one they would slow the measuring client,
    not the server): ``connections`` at once, reconnecting once closed if ``again``."""
    command = [sys.executable, __file__, "flood", str(port), kind, str(connections), "again" if again else "once"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def websocket_flood() -> list[str]:
    port = free_port()
    server = ServerProcess("--log-level", "WARNING", "--web", f"127.0.0.1:{port}")
    try:
        neighbour = Peer(server.address)
        neighbour.login("neighbour")
        quiet = _latencies(neighbour, 2000)
        rows = []
        for kind in FLOODS:
            flood = _flood_process(port, kind, 4, again=True)
            gevent.sleep(0.3)  # the flooders connect and start
            during = _latencies(neighbour, 3000)
            flood.terminate()
            closings = [float(line) for line in flood.communicate(timeout=10)[0].split()]
            rows.append(
                f"| {kind} | {_percentile(during, 0.5):.2f} ms | {_percentile(during, 0.99):.2f} ms | "
                f"{len(closings)} flooding connections closed (1008), each within "
                f"{max(closings, default=0) * 1000:.0f} ms of its first frame |"
            )
        neighbour.close()
    finally:
        server.terminate()
    return [
        "WebSocket floods beside a TCP neighbour: the neighbour's LIST round trips (3000) while four clients, "
        "from a process of their own, flood a WebSocket with frames without content as fast as they can, "
        "opening another as soon as one is closed.",
        "",
        "| flood | neighbour p50 | neighbour p99 | flooders |",
        "|---|---|---|---|",
        f"| no flood | {_percentile(quiet, 0.5):.2f} ms | {_percentile(quiet, 0.99):.2f} ms | |",
        *rows,
    ]


def room_flood() -> list[str]:
    server = ServerProcess("--log-level", "WARNING")
    rows = []
    try:
        neighbour = Peer(server.address)
        neighbour.login("neighbour")
        for senders in (1, 10):
            # The flood from a process of its own (in this one it would slow the neighbour).
            command = [str(Path(sys.executable).parent / "chatroom-bench"), "--port", str(server.address[1])]
            command += ["--scenario", "room", "--room-size", "1000", "--clients", "1000", "--senders", str(senders)]
            command += ["--window", "64", "--warmup", "2", "--duration", "4", "--json"]
            flood = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            gevent.sleep(3.0)  # the members log in and join, the senders start
            during = _latencies(neighbour, 3000)
            delivered = json.loads(flood.communicate(timeout=60)[0])["msgs_per_s"]
            rows.append(
                f"| {senders} | {delivered:,.0f} | {_percentile(during, 0.5):.2f} ms | "
                f"{_percentile(during, 0.99):.2f} ms |"
            )
        neighbour.close()
    finally:
        server.terminate()
    return [
        "A room flood beside a TCP neighbour: the neighbour's LIST round trips (3000) while senders in a room "
        "of 1000 members (chatroom-bench, a process of its own) keep 64 messages each in flight.",
        "",
        "| senders | deliveries/s | neighbour p50 | neighbour p99 |",
        "|---|---|---|---|",
        *rows,
    ]


def _flood_main(port: str, kind: str, connections: str, mode: str) -> None:
    def flood():
        while True:
            print(_flooder(("127.0.0.1", int(port)), FLOODS[kind]), flush=True)
            if mode != "again":
                return

    gevent.joinall([gevent.spawn(flood) for _ in range(int(connections))])


def kill_minus_nine(folder: Path) -> list[str]:
    server = ServerProcess("--log-level", "WARNING", data_dir=folder)
    recipients = [f"away{i}" for i in range(8)]
    for name in recipients:
        extended(server.address, name).close()
    stored, registered, relayed, peers = [], [], [], []

    def send(number):
        peer = extended(server.address)
        peers.append(peer)
        peer.login(f"sender{number}")
        for batch in range(100_000):
            texts = [f"{number}-{batch}-{i} " + "x" * 30_000 for i in range(20)]
            peer.send(*[SendTo(recipients[(batch + i) % len(recipients)], text) for i, text in enumerate(texts)])
            stored.extend(text.split()[0] for text in texts if peer.next_event() == STORED)

    def register(number):
        for i in range(100_000):
            peer = extended(server.address)
            if peer.request(Register(f"r{number}x{i}", "pw")) == OK:
                registered.append(f"r{number}x{i}")
            peer.close()

    def talk():
        alice, carol = extended(server.address, "alice"), extended(server.address, "carol")
        peers.extend([alice, carol])
        for i in range(10**7):
            assert alice.request(SendTo("carol", f"h{i}")) == OK
            relayed.append(time.monotonic())
            carol.next_event()

    def quietly(work, *args):
        try:
            work(*args)
        except (OSError, AssertionError):
            pass

    workers = [gevent.spawn(quietly, send, n) for n in range(3)] + [gevent.spawn(quietly, register, 0)]
    workers.append(gevent.spawn(quietly, talk))
    gevent.sleep(3.0)
    server.proc.kill()
    killed = time.monotonic()
    gevent.joinall(workers, timeout=5)
    gevent.killall(workers)
    for peer in peers:
        peer.close()
    again = ServerProcess("--log-level", "WARNING", data_dir=folder)
    try:
        kept = set()
        for name in recipients:
            peer = extended(again.address)
            peer.send(Authenticate(name, "pw"))
            if peer.next_event() == OK:
                with gevent.Timeout(2.0, False):
                    while isinstance(event := peer.next_event(), StoredMessage):
                        kept.add(event.text.split()[0])
            peer.close()
        missing_accounts = 0
        for name in registered:
            peer = extended(again.address)
            missing_accounts += peer.request(Authenticate(name, "pw")) != OK
            peer.close()
        alice = extended(again.address)
        alice.request(Authenticate("alice", "pw"))
        page = alice.request(HistoryRequest("carol", 1000))
        alice.close()
    finally:
        again.terminate()
    newest = int(page.entries[-1].text[1:]) if isinstance(page, HistoryPage) and page.entries else -1
    lost_history = len(relayed) - (newest + 1)
    window = sum(1 for moment in relayed if moment > killed - 0.1)
    return [
        "kill -9 under load: three senders pipelining 30 KB messages to registered users who are away, "
        "registrations one after another, and a pair chatting with history on; SIGKILL after 3 s, then a "
        "restart on the same database.",
        "",
        "| | answered | still there after the restart |",
        "|---|---|---|",
        f"| STORED | {len(stored)} | {len(set(stored) & kept)} |",
        f"| REGISTER OK | {len(registered)} | {len(registered) - missing_accounts} |",
        f"| history (OK) | {len(relayed)} | {newest + 1}: {lost_history} lost; {window} were answered in the "
        "last 100 ms |",
    ]


def password_burst() -> list[str]:
    server = ServerProcess("--log-level", "INFO")
    try:
        owner = Peer(server.address, source="127.0.0.2")
        assert owner.request(Hello(1)) == OK and owner.request(Register("bob", "right")) == OK
        owner.close()
        guessers = []
        for i in range(250):
            peer = Peer(server.address, source=f"127.0.{1 + i // 200}.{3 + i % 200}")
            peer.send(Hello(1), Authenticate("bob", "guess"), Authenticate("bob", "guess again"))
            guessers.append(peer)
        started = time.monotonic()
        again = Peer(server.address, source="127.0.0.2")
        assert again.request(Hello(1)) == OK
        assert again.request(Authenticate("bob", "right")) == OK
        owner_in = time.monotonic() - started
        for peer in guessers:
            for _ in range(3):
                peer.next_event()
            peer.close()
        again.close()
        log = server.log_text()
    finally:
        server.terminate()
    hashed = log.count("password for bob") - log.count(": busy") - log.count(": too many tries")
    return [
        "Password guesses: 500 AUTHENTICATEs for one registered name in one burst from 250 addresses, then "
        "its owner from the address it registered from.",
        "",
        "| | figure |",
        "|---|---|",
        f"| guesses hashed (at most 10 a minute for a name) | {hashed} of 500 |",
        f"| the owner logged in after | {owner_in * 1000:.0f} ms |",
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["flood"]:
    _flood_main(*sys.argv[2:6])
