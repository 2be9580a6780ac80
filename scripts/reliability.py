"""Reliability figures: what hostile or unlucky clients cannot do to chatroom-server.

Run through ./scripts/reliability. On 127.0.0.1 it measures, each against a fresh server:

- stalled TLS handshakes: N connections that never finish a handshake (most silent, some
  stopping inside a ClientHello), the server's memory for them, and whether a new TLS client
  still logs in and how long it takes;
- shutdown under load: messages acknowledged to a sender and still queued for a recipient
  that reads slowly, SIGTERM, and how many of them the recipient receives;
- fuzzing: random, mutated and valid frames over many connections; whether the server still
  serves, what its memory did, and whether its log holds a traceback;
- the promises of round 3 (scripts/promises.py): WebSocket floods beside a TCP neighbour,
  kill -9 under load, a burst of password guesses;
- a chaos run of three nodes on one Redis, its invariants checked (scripts/chaos.py).

The figures replace the part of docs/reliability.md between the GENERATED markers.
"""

import datetime
import os
import random
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import gevent
import trustme
from gevent import socket, ssl
from gevent.pool import Pool

from chatroom.codec import Decoder, encode
from chatroom.protocol import Incoming, ListUsers, Login, SendTo, UserList
from chatroom.testing import OK, Peer, ServerProcess, random_frames, rss_kb
from chatroom.testing.docs import write_generated

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos  # noqa: E402  (scripts beside this one)
import promises  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
STALLED = int(os.environ.get("RELIABILITY_STALLED", "19000"))
DRAINED = int(os.environ.get("RELIABILITY_DRAINED", "50000"))
FUZZ_CONNECTIONS = int(os.environ.get("RELIABILITY_FUZZ_CONNECTIONS", "4000"))
FRAMES_PER_CONNECTION = 25


def raise_own_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def tls_login(address, ca_file) -> float:
    """Seconds a new TLS client takes to connect, shake hands and log in."""
    started = time.monotonic()
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(address, timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(encode(Login("newcomer")))
            decoder = Decoder.for_client()
            events = []
            while not events:
                events = decoder.receive_data(tls.recv(100))
            assert events[0] == OK, events
    return time.monotonic() - started


def stalled_handshakes(folder: Path) -> list:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    server = ServerProcess(
        "--log-level", "WARNING", "--tls-cert", str(folder / "cert.pem"), "--tls-key", str(folder / "key.pem")
    )
    try:
        gevent.sleep(0.5)
        alone = tls_login(server.address, str(folder / "ca.pem"))
        before = rss_kb(server.pid)
        stalled = []
        for i in range(STALLED):
            sock = socket.create_connection(server.address)
            if i % 10 == 0:
                sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello, cut short
            stalled.append(sock)
        gevent.sleep(1.0)
        during = rss_kb(server.pid)
        beside = tls_login(server.address, str(folder / "ca.pem"))
        for sock in stalled:
            sock.close()
        return [
            f"Stalled TLS handshakes: {STALLED} connections held open without finishing a handshake "
            f"(one in ten stopping inside its ClientHello), `--max-handshakes` 1000 (the default).",
            "",
            "| | figure |",
            "|---|---|",
            f"| server RSS before / with them | {before / 1024:.0f} MB / {during / 1024:.0f} MB |",
            f"| memory per stalled connection (the oldest are dropped beyond 1000) | "
            f"{(during - before) / STALLED:.1f} KB |",
            f"| a new TLS client connects, shakes hands, logs in | {beside * 1000:.0f} ms "
            f"(alone: {alone * 1000:.0f} ms) |",
        ]
    finally:
        server.terminate()


def drain_on_sigterm() -> list:
    text = "m" * 200
    server = ServerProcess("--log-level", "WARNING", "--sendq", str(256 << 20), "--send-timeout", "60")
    reader, sender = Peer(server.address), Peer(server.address)
    try:
        reader.login("reader")
        sender.login("sender")
        sender.send(*[SendTo("reader", f"{i} {text}") for i in range(DRAINED)])
        acknowledged = sum(sender.next_event() == OK for _ in range(DRAINED))
        server.signal(signal.SIGTERM)
        received = 0
        reader.sock.settimeout(60)
        while data := reader.sock.recv(1 << 20):
            for event in reader.decoder.receive_data(data):
                assert event == Incoming("sender", f"{received} {text}")
                received += 1
                if received % 1000 == 0:
                    gevent.sleep(0.001)  # a slow reader
        status = server.wait(30)
    finally:
        reader.close()
        sender.close()
        server.terminate()
    return [
        f"Shutdown under load: {DRAINED} messages of {len(text) + 6} B pipelined to a recipient "
        "that reads slowly; SIGTERM once all were acknowledged.",
        "",
        "| | figure |",
        "|---|---|",
        f"| acknowledged (`Success`) | {acknowledged} |",
        f"| received by the recipient | {received} |",
        f"| acknowledged messages lost | {acknowledged - received} |",
        f"| server exit status | {status} |",
    ]


def fuzz() -> list:
    server = ServerProcess("--log-level", "WARNING")
    rng = random.Random(20261201)

    def blast():
        with socket.create_connection(server.address, timeout=10) as sock:
            try:
                sock.sendall(random_frames(rng, FRAMES_PER_CONNECTION))
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
            except OSError:
                pass

    try:
        pool = Pool(50)
        for _ in range(200):
            pool.spawn(blast)
        pool.join()
        before = rss_kb(server.pid)
        for _ in range(FUZZ_CONNECTIONS):
            pool.spawn(blast)
        pool.join()
        after = rss_kb(server.pid)
        probe = Peer(server.address)
        try:
            serves = probe.request(ListUsers()) == UserList(())
        finally:
            probe.close()
        log = server.log_text()
    finally:
        server.terminate()
    frames = FUZZ_CONNECTIONS * FRAMES_PER_CONNECTION
    return [
        f"Fuzzing: {frames} frames (valid, mutated and random bytes) over {FUZZ_CONNECTIONS} connections, "
        "50 at a time.",
        "",
        "| | figure |",
        "|---|---|",
        f"| server still serving afterwards | {'yes' if serves else 'NO'} |",
        f"| RSS growth over the run | {(after - before) / 1024:.1f} MB |",
        f"| tracebacks in the log | {log.count('Traceback')} |",
    ]


def main():
    limit = raise_own_file_limit()
    if limit < STALLED + 100:
        sys.exit(f"reliability: the open-files limit {limit} is too low for {STALLED} connections")
    with tempfile.TemporaryDirectory() as folder:
        sections = [stalled_handshakes(Path(folder)), drain_on_sigterm(), fuzz()]
        sections += [promises.websocket_flood(), promises.room_flood()]
        sections += [promises.kill_minus_nine(Path(folder) / "killed")]
        sections += [promises.password_burst(), chaos.section(chaos.run(Path(folder) / "chaos"))]
    lines = [f"Measured by `./scripts/reliability` on {datetime.date.today()}, {os.cpu_count()} cores.", ""]
    for section in sections:
        print("\n".join(section) + "\n", flush=True)
        lines += [*section, ""]
    write_generated(DOC, "reliability", lines[:-1])
    print(f"reliability: wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
