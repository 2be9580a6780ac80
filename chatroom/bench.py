"""chatroom-bench: load and measure any chatroom server, as redis-benchmark does for Redis.

Scenarios:
  relay  clients log in as PREFIX0..PREFIX{C-1} and pair up (0<->1, 2<->3, ...); each keeps
         WINDOW messages in flight to its partner, sending a new one for every OK
  fanin  clients 1..C-1 each keep WINDOW messages in flight to client 0
  hold   clients log in and stay idle (measure the server's memory meanwhile)
  room   clients in rooms of ROOM_SIZE; the first SENDERS of each keep WINDOW messages in
         flight to it; every member receives each message (see chatroom.bench_rooms)

With --register --devices N, each name is also logged in from N-1 more connections (a
registered user on several devices): they take every message too, and only read.

Figures:
  msgs/s        messages delivered to their recipients per second, after the warm-up (in
                rooms: deliveries, each message to every member; messages/s besides)
  latency       from the sender's send to the recipient's receipt: p50, p99, p99.9, max
  failures      RESPONSE FAILURE or MALFORMED answers to SENDTO
  disconnects   connections the server closed during the run
  framing       frames from the server that did not decode
  with --verify, per sender and recipient, using the sequence number in every message:
  lost          acknowledged (OK) messages that never arrived
  duplicated    messages that arrived more than once
  reordered     messages that arrived after a later one from the same sender

Every message carries its sequence number and send time, so any chatroom server can be
measured: the bench is an ordinary client of the protocol.
"""

import argparse
import json
import sys
import time

import gevent
from gevent import socket
from gevent.event import Event

from .bench_devices import Device
from .bench_figures import failed, percentile, progress, report
from .bench_rooms import RoomChecks, login_frames, rooms_of
from .client.reasons import server_reason
from .codec import Decoder, encode
from .protocol import (
    DEFAULT_PORT,
    EXTENSION_VERSION,
    MAX_NAME_CHARS,
    DirectMessage,
    Hello,
    Incoming,
    Login,
    Malformed,
    Register,
    Response,
    SendTo,
    SessionToken,
    Status,
    TokenRequest,
)
from .room_frames import RoomMessage
from .websocket_client import connect as connect_websocket

MIN_PAYLOAD = 32
PASSWORD = "chatroom-bench"
DRAIN_TIMEOUT = 5.0


class Stats:
    """What all clients saw, shared by their greenlets."""

    def __init__(self):
        self.measuring = False
        self.arrived = 0  # every message received, for the progress line
        self.delivered = 0  # messages received while measuring
        self.latencies_ns = []
        self.failures = 0
        self.disconnects = 0
        self.framing_errors = 0
        self.acknowledged = {}  # (sender, recipient) -> OKs received
        self.received = {}  # (sender, recipient) -> set of sequence numbers
        self.duplicated = 0
        self.reordered = 0
        self.highest = {}  # (sender, recipient) -> highest sequence number received


class BenchClient:
    """One connection: logs in, sends to a target with a window, records what arrives."""

    def __init__(self, address, name, stats, payload, verify, register=False, websocket=False):
        self.name = name
        self._register = register
        self._answers_due = 2 if register else 1  # HELLO and REGISTER, or LOGIN
        if websocket:
            self.sock = connect_websocket(address)
        else:
            plain = socket.create_connection(address, timeout=30)
            plain.settimeout(None)
            self.sock = plain
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._stats = stats
        self._payload = payload
        self._verify = verify
        self._decoder = Decoder.for_client()
        self._target = ""
        self._sending = False
        self._seq = 0
        self._logged_in = Event()
        self._login_refused: Response | None = None  # the first refusal of a step of the login
        self.token: str | None = None  # with --register: for the name's other devices
        self._reader = gevent.spawn(self._read)
        self.checks: RoomChecks | None = None  # the room scenario's, with --verify
        self.room = ""

    def log_in(self):
        if self.room:
            frames, self._answers_due = login_frames(self, self.room, self._register)
            self.sock.sendall(frames)
        elif self._register:
            # (A session token too: the name's other devices log in with it, as a browser
            # that was reloaded does, not with the password, whose tries are limited.)
            greeting = encode(Hello(EXTENSION_VERSION)) + encode(Register(self.name, PASSWORD))
            self.sock.sendall(greeting + encode(TokenRequest()))
        else:
            self.sock.sendall(encode(Login(self.name)))
        if not self._logged_in.wait(30):
            raise RuntimeError(f"no answer to the login of {self.name}")
        if self._register:
            with gevent.Timeout(30, RuntimeError(f"no session token for {self.name}")):
                while self.token is None and self._login_refused is None:
                    gevent.sleep(0.01)
        refused = self._login_refused
        if refused is not None:
            why = server_reason(refused, self.name) or "FAILURE"
            raise RuntimeError(f"the server refused the login of {self.name} ({why})")

    def start_sending(self, target, window):
        self._target = target
        self._sending = True
        self.sock.sendall(b"".join(self._next_frame() for _ in range(window)))

    def stop_sending(self):
        self._sending = False

    def close(self):
        self._reader.kill(block=False)
        self.sock.close()

    def _next_frame(self):
        stamp = f"{self._seq:010d} {time.monotonic_ns():019d} "
        self._seq += 1
        text = stamp + "x" * (self._payload - len(stamp))
        return encode(SendTo(self._target, text))

    def _read(self):
        try:
            while data := self.sock.recv(262144):
                replies: list = []
                for event in self._decoder.receive_data(data):
                    kind = type(event)
                    if kind is Incoming or kind is DirectMessage or kind is RoomMessage:
                        self._on_message(event)
                    elif kind is Response:
                        self._on_response(event, replies)
                    elif kind is SessionToken:
                        self.token = event.token
                    elif kind is Malformed:
                        self._stats.framing_errors += 1
                if self._decoder.broken:
                    self._stats.framing_errors += 1
                    break
                if replies:
                    self.sock.sendall(b"".join(replies))
        except OSError:
            pass
        self._stats.disconnects += 1

    def _on_response(self, event, replies):
        if not self._logged_in.is_set():
            if event.status is not Status.OK and self._login_refused is None:
                self._login_refused = event
            self._answers_due -= 1
            if not self._answers_due:
                self._logged_in.set()
            return
        if event.status is Status.OK:
            key = (self.name, self._target)
            self._stats.acknowledged[key] = self._stats.acknowledged.get(key, 0) + 1
        else:
            self._stats.failures += 1
        if self._sending:
            replies.append(self._next_frame())

    def _on_message(self, message):
        now = time.monotonic_ns()
        stats = self._stats
        stats.arrived += 1
        seq_text, sent_text = message.text.split(" ", 2)[:2]
        if stats.measuring:
            stats.delivered += 1
            stats.latencies_ns.append(now - int(sent_text))
        if self._verify:
            self._check_sequence((message.sender, self.name), int(seq_text))
            if self.checks is not None:
                self.checks.saw(self.name, message)

    def _check_sequence(self, key, seq):
        stats = self._stats
        seen = stats.received.setdefault(key, set())
        if seq in seen:
            stats.duplicated += 1
            return
        seen.add(seq)
        if seq < stats.highest.get(key, -1):
            stats.reordered += 1
        else:
            stats.highest[key] = seq


def run(args) -> dict:
    stats = Stats()
    clients = [
        BenchClient(
            (args.host, args.port[i % len(args.port)]),
            f"{args.prefix}{i}",
            stats,
            args.payload,
            args.verify,
            args.register,
            args.websocket,
        )
        for i in range(args.clients)
    ]
    rooms = rooms_of(clients, args.room_size) if args.scenario == "room" else []
    checks = RoomChecks()
    for room, members in rooms:
        for member in members:
            member.room, member.checks = room, checks
    started = time.monotonic()
    gevent.joinall([gevent.spawn(c.log_in) for c in clients], raise_error=True)
    devices = [
        gevent.spawn(Device, (args.host, args.port[i % len(args.port)]), client.name, client.token)
        for i, client in enumerate(clients)
        for _ in range(args.devices - 1)
    ]
    gevent.joinall(devices, raise_error=True)
    devices = [greenlet.value for greenlet in devices]
    connect_s = time.monotonic() - started
    if args.scenario == "hold":
        print(f"READY {len(clients)}", flush=True)
    elif args.scenario == "relay":
        for a, b in zip(clients[::2], clients[1::2], strict=True):
            a.start_sending(b.name, args.window)
            b.start_sending(a.name, args.window)
    elif args.scenario == "room":
        for room, members in rooms:
            for member in members[: args.senders]:
                member.start_sending(room, args.window)
    else:  # fanin
        for client in clients[1:]:
            client.start_sending(clients[0].name, args.window)

    progress(stats, args.warmup, "warming up")
    stats.measuring = True
    measured_from = time.monotonic()
    progress(stats, args.duration, "measuring")
    stats.measuring = False
    seconds = time.monotonic() - measured_from
    for client in clients:
        client.stop_sending()
    if args.verify:
        drain(stats, args.room_size if args.scenario == "room" else 1)
    for client in clients:
        client.close()
    for device in devices:
        device.close()

    latencies = sorted(stats.latencies_ns)
    unique = sum(len(s) for s in stats.received.values())
    room_size = args.room_size if args.scenario == "room" else 1  # receivers of each message
    return {
        "scenario": args.scenario,
        "clients": args.clients,
        "window": args.window,
        "payload": args.payload,
        "seconds": round(seconds, 3),
        "delivered": stats.delivered,
        "msgs_per_s": round(stats.delivered / seconds, 1) if seconds else 0.0,
        "p50_us": percentile(latencies, 0.50) // 1000,
        "p99_us": percentile(latencies, 0.99) // 1000,
        "p999_us": percentile(latencies, 0.999) // 1000,
        "max_us": (latencies[-1] // 1000) if latencies else 0,
        "failures": stats.failures,
        "disconnects": stats.disconnects,
        "framing_errors": stats.framing_errors,
        "messages_per_s": round(stats.delivered / room_size / seconds, 1) if seconds else 0.0,
        "room_size": room_size if args.scenario == "room" else None,
        "misordered": checks.misordered if args.verify and args.scenario == "room" else None,
        "lost": max(0, sum(stats.acknowledged.values()) * room_size - unique) if args.verify else None,
        "duplicated": stats.duplicated if args.verify else None,
        "reordered": stats.reordered if args.verify else None,
        "connect_s": round(connect_s, 3),
        "devices": args.devices,
        "device_bytes": sum(device.bytes for device in devices),
    }


def drain(stats, receivers: int = 1):
    """After the sends stop, wait for acknowledged messages still on their way (to each of
    ``receivers``: a room's members)."""
    with gevent.Timeout(DRAIN_TIMEOUT, False):
        while sum(stats.acknowledged.values()) * receivers > sum(len(s) for s in stats.received.values()):
            gevent.sleep(0.05)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="chatroom-bench",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default %(default)s)")
    parser.add_argument(
        "--port",
        type=lambda text: [int(port) for port in text.split(",")],
        default=[DEFAULT_PORT],
        metavar="PORT[,PORT...]",
        help=f"server port (default {DEFAULT_PORT}); with several, client i connects to the (i mod n)th, so that "
        "relay partners sit on different servers of a cluster",
    )
    parser.add_argument("--scenario", choices=["relay", "fanin", "hold", "room"], default="relay")
    parser.add_argument("--room-size", type=int, default=10, help="room: members of each room (default %(default)s)")
    parser.add_argument("--senders", type=int, default=10, help="room: senders in each room (default %(default)s)")
    parser.add_argument("--clients", type=int, default=2, help="connections (default %(default)s)")
    parser.add_argument("--window", type=int, default=1, help="messages in flight per sender (default %(default)s)")
    parser.add_argument(
        "--payload", type=int, default=64, help=f"message size in bytes, at least {MIN_PAYLOAD} (default %(default)s)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default %(default)s)")
    parser.add_argument("--verify", action="store_true", help="check every message's sequence number")
    parser.add_argument("--prefix", default="bench", help="usernames are PREFIX0, PREFIX1, ... (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument(
        "--websocket",
        action="store_true",
        help="connect over WebSocket to the server's --web port(s), one frame per message",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="with --register: connections per name, the others only reading (default %(default)s)",
    )
    parser.add_argument(
        "--register",
        action="store_true",
        help="register each name (HELLO, REGISTER) instead of LOGIN, so that the server keeps their history",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.payload < MIN_PAYLOAD:
        parser.error(f"--payload must be at least {MIN_PAYLOAD}")
    if args.scenario == "relay" and args.clients % 2:
        parser.error("relay needs an even number of clients")
    if args.scenario == "room" and not 1 <= args.senders <= args.room_size:
        parser.error("room needs 1 <= --senders <= --room-size")
    if args.scenario == "fanin" and args.clients < 2:
        parser.error("fanin needs at least 2 clients")
    if args.devices < 1 or (args.devices > 1 and not args.register):
        parser.error("--devices N needs N >= 1, and --register for more than one")
    if len(f"{args.prefix}{args.clients - 1}") > MAX_NAME_CHARS:
        parser.error(f"--prefix too long: usernames have at most {MAX_NAME_CHARS} characters")
    try:
        result = run(args)
    except OSError as err:
        ports = ",".join(map(str, args.port))
        print(f"chatroom-bench: cannot connect to {args.host}:{ports}: {err.strerror or err}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        print(f"chatroom-bench: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else report(result))
    return 1 if failed(result) else 0


if __name__ == "__main__":
    sys.exit(main())
