"""What an operator sees and does: /metrics and /health, JSON logs, SIGHUP, config files."""

import importlib.util
import json
import signal
import sys
import time
import urllib.error
import urllib.request

import gevent
import pytest
import trustme
from gevent import subprocess
from prometheus_client.parser import text_string_to_metric_families

from chatroom.protocol import ListUsers, Login, SendTo, UserList
from chatroom.server.operations.metrics import SCRAPE_CACHE, SCRAPER_TIMEOUT
from chatroom.testing import FAILURE, OK, WAIT, assert_clean_log, eventually, free_port

pytestmark = pytest.mark.process


def get(url) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Metrics:
    def __init__(self, server_process, *args):
        self.port = free_port()
        self.server = server_process("--metrics", f"127.0.0.1:{self.port}", *args)
        self.server.wait_for_log(f"Metrics on http://127.0.0.1:{self.port}/metrics")
        self._last = -SCRAPE_CACHE

    def scrape(self) -> dict:
        """{(name, labels as a sorted tuple): value} of every sample, fresh: past the time the
        server reuses a scrape's answer."""
        gevent.sleep(max(0.0, self._last + SCRAPE_CACHE + 0.05 - time.monotonic()))
        self._last = time.monotonic()
        status, text = get(f"http://127.0.0.1:{self.port}/metrics")
        assert status == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def health(self):
        return get(f"http://127.0.0.1:{self.port}/health")


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_counters_move_with_the_load(server_process, logged_in, peer_at):
    metrics = Metrics(server_process)
    before = metrics.scrape()
    alice, bob = logged_in(metrics.server.address, "alice"), logged_in(metrics.server.address, "bob")
    load = gevent.spawn(lambda: [alice.request(SendTo("bob", f"m{i}")) for i in range(300)])
    during = metrics.scrape()  # scraped while the load runs
    assert load.get(timeout=WAIT) == [OK] * 300
    assert [bob.next_event().text for _ in range(300)] == [f"m{i}" for i in range(300)]
    assert alice.request(SendTo("nobody", "x")) == FAILURE
    after = metrics.scrape()
    assert value(after, "chatroom_users_logged_in") == 2
    assert value(after, "chatroom_connections_open", transport="tcp") == 2
    assert (
        value(after, "chatroom_connections_accepted_total") - value(before, "chatroom_connections_accepted_total") == 2
    )
    assert value(after, "chatroom_frames_received_total", type="sendto") == 301
    assert value(after, "chatroom_frames_received_total", type="login") == 2
    assert value(after, "chatroom_messages_relayed_total", route="same_node") == 300
    assert value(after, "chatroom_replies_total", status="failure") == 1
    assert value(after, "chatroom_replies_total", status="ok") == 302
    assert value(after, "chatroom_received_bytes_total") > value(during, "chatroom_received_bytes_total") > 0
    assert value(after, "chatroom_sent_bytes_total") > 300 * 10
    assert value(after, "chatroom_sendto_handover_seconds_count") >= 300 // 16 - 2  # one batch in 16 is timed


def test_refusals_and_stalls_are_counted(server_process, logged_in, peer_at):
    metrics = Metrics(server_process, "--max-clients", "3", "--sendq", "65536", "--send-timeout", "1")
    stalled = logged_in(metrics.server.address, "stalled")
    flooder = logged_in(metrics.server.address, "flooder")
    extra = [peer_at(metrics.server.address) for _ in range(2)]  # the third is refused
    extra[0].request(ListUsers())
    extra[1].assert_closed()
    with gevent.Timeout(20):
        while flooder.request(SendTo("stalled", "x" * 60000)) == OK:
            pass
    stalled.assert_closed()
    samples = eventually(lambda: (s := metrics.scrape()) and value(s, "chatroom_stalled_drops_total") == 1 and s)
    assert value(samples, "chatroom_connections_refused_total", reason="max_clients") == 1
    assert value(samples, "chatroom_disconnects_total", reason="stalled") == 1


def test_health_is_503_while_draining(server_process, logged_in):
    metrics = Metrics(server_process, "--sendq", str(64 << 20), "--send-timeout", "30", "--drain-timeout", "10")
    assert metrics.health() == (200, "serving\n")
    reader = logged_in(metrics.server.address, "reader")
    sender = logged_in(metrics.server.address, "sender")
    sender.send(*[SendTo("reader", "y" * 1000) for _ in range(10_000)])  # 10 MB the reader leaves unread
    assert all(sender.next_event() == OK for _ in range(10_000))
    metrics.server.signal(signal.SIGTERM)
    assert eventually(lambda: metrics.health() == (503, "draining\n"))
    reader.sock.settimeout(30)
    while reader.sock.recv(1 << 20):
        pass
    assert metrics.server.wait(15) == 0


def test_json_logs_parse_line_by_line(server_process, logged_in, peer_at):
    server = server_process("--log-format", "json")
    assert peer_at(server.address).request(Login("al\u202eice")) == FAILURE  # never logged: refused
    logged_in(server.address, "alice").close()
    server.wait_for_log('"event": "logout"')
    entries = [json.loads(line) for line in server.log_text().splitlines()]
    assert all({"time", "level", "event", "message"} <= entry.keys() for entry in entries)
    login = next(entry for entry in entries if entry["event"] == "login")
    assert login["name"] == "alice" and login["peer"].startswith("127.0.0.1:")
    assert any(entry["event"] == "listening" and entry["port"] == server.port for entry in entries)
    assert all(line.isascii() for line in server.log_text().splitlines())


@pytest.fixture
def two_cas(tmp_path):
    """Two CAs, each with a server certificate for 127.0.0.1, in files."""
    paths = {}
    for name in ("first", "second"):
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(tmp_path / f"{name}-ca.pem"))
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.pem"))
        paths[name] = tmp_path
    return tmp_path


def tls_client(address, ca, *lines):
    return subprocess.run(
        [sys.executable, "-m", "chatroom.client", "--tls", "--ca", str(ca), *map(str, address)],
        input="".join(line + "\n" for line in lines).encode(),
        capture_output=True,
        timeout=30,
    )


def test_sighup_reloads_the_certificate_and_keeps_connections(server_process, two_cas):
    cert, key = two_cas / "live.pem", two_cas / "live.key"
    cert.write_bytes((two_cas / "first.pem").read_bytes())
    key.write_bytes((two_cas / "first.key").read_bytes())
    server = server_process("--tls-cert", str(cert), "--tls-key", str(key))
    old = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatroom.client",
            "--tls",
            "--ca",
            str(two_cas / "first-ca.pem"),
            *map(str, server.address),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        old.stdin.write(b"login old\n")
        old.stdin.flush()
        assert gevent.with_timeout(WAIT, old.stdout.readline) == b"Success\n"
        cert.write_bytes((two_cas / "second.pem").read_bytes())
        key.write_bytes((two_cas / "second.key").read_bytes())
        server.signal(signal.SIGHUP)
        server.wait_for_log("SIGHUP: reloaded the TLS certificate")
        assert (
            tls_client(server.address, two_cas / "second-ca.pem", "login new", "list").stdout == b"Success\nnew\nold\n"
        )
        assert tls_client(server.address, two_cas / "first-ca.pem", "list").returncode == 1  # the old CA: no more
        old.stdin.write(b"list\n")  # the connection made before the reload is still served
        old.stdin.flush()
        assert [gevent.with_timeout(WAIT, old.stdout.readline) for _ in range(1)] == [b"old\n"]
        key.write_text("not a key")
        server.signal(signal.SIGHUP)
        server.wait_for_log("the certificate in use stays")
        assert tls_client(server.address, two_cas / "second-ca.pem", "list").stdout == b"old\n"
    finally:
        old.kill()
        old.communicate()


def test_a_config_file_with_the_command_line_over_it(tmp_path):
    config = tmp_path / "chatroom.toml"
    config.write_text('port = 6000\nmax-clients = 500\nlog_format = "json"\nno-history = true\n')
    result = subprocess.run(
        [sys.executable, "-m", "chatroom.server", "--config", str(config), "--port", "7000", "--print-config"],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )
    assert result.returncode == 0, result.stderr
    settings = dict(line.split(" = ", 1) for line in result.stdout.splitlines() if not line.startswith("#"))
    assert settings["port"] == "7000" and settings["max-clients"] == "500"
    assert settings["log-format"] == '"json"' and settings["no-history"] == "true"
    config.write_text("max-clients = -3x\n")
    bad = subprocess.run(
        [sys.executable, "-m", "chatroom.server", "--config", str(config)], capture_output=True, text=True, timeout=15
    )
    assert bad.returncode == 2 and "max-clients" in bad.stderr and "Traceback" not in bad.stderr
    config.write_text("colour = 'blue'\n")
    bad = subprocess.run(
        [sys.executable, "-m", "chatroom.server", "--config", str(config)], capture_output=True, text=True, timeout=15
    )
    assert bad.returncode == 2 and "no such setting: colour" in bad.stderr


def test_the_metrics_server_answers_only_its_two_paths(server_process, logged_in):
    metrics = Metrics(server_process)
    assert logged_in(metrics.server.address, "x").request(ListUsers()) == UserList(("x",))
    assert get(f"http://127.0.0.1:{metrics.port}/nothing")[0] == 404


def test_bad_requests_to_the_metrics_port_are_no_errors(server_process):
    metrics = Metrics(server_process)
    bad = [
        bytes(range(256)),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /\x8a\xb4\x1d HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1\r\n\r\n",  # (no minor version: pywsgi's IndexError, with a traceback)
    ]
    for request in bad * 5:
        with gevent.socket.create_connection(("127.0.0.1", metrics.port), timeout=WAIT) as sock:
            sock.sendall(request)
            sock.shutdown(gevent.socket.SHUT_WR)
            with gevent.Timeout(WAIT):
                while sock.recv(65536):
                    pass
    assert metrics.health() == (200, "serving\n")
    metrics.server.wait_for_log("more reports of bad requests in the last second")
    log = metrics.server.log_text()
    assert "Invalid" in log  # a line a second at most...
    assert log.count("metrics port:") < 5
    assert "\\x8a\\xb4" in log or "\\ufffd" in log or "\\x00" in log  # ...escaped...
    assert_clean_log(log)  # ...and none is an error


def test_scrapes_are_cheap_and_silent_scrapers_are_closed(server_process):
    metrics = Metrics(server_process)
    first = get(f"http://127.0.0.1:{metrics.port}/metrics")
    for _ in range(50):  # scraping in a loop gets the answer made a moment ago
        assert get(f"http://127.0.0.1:{metrics.port}/metrics") == first
    silent = gevent.socket.create_connection(("127.0.0.1", metrics.port), timeout=WAIT)
    silent.sendall(b"GET /metrics HTTP/1.1\r\n")  # and then nothing
    with gevent.Timeout(SCRAPER_TIMEOUT + WAIT):  # the server closes it (perhaps after a 4xx)
        while silent.recv(65536):
            pass
    silent.close()


def test_rooms_are_counted(server_process):
    from chatroom.protocol import Hello, Login
    from chatroom.room_frames import Join
    from chatroom.testing import Peer

    metrics = Metrics(server_process)
    peers = []
    for name in ("ann", "ben", "cat"):
        peer = Peer(metrics.server.address)
        peers.append(peer)
        assert peer.reply(Hello(3)) == OK and peer.reply(Login(name)) == OK and peer.reply(Join("#r")) == OK
    assert peers[1].reply(Join("#s")) == OK
    for n in range(5):
        assert peers[0].reply(SendTo("#r", f"m{n}")) == OK
    scraped = metrics.scrape()
    assert value(scraped, "chatroom_rooms") == 2
    assert value(scraped, "chatroom_room_memberships") == 4
    assert value(scraped, "chatroom_room_messages_total") == 5
    assert value(scraped, "chatroom_room_deliveries_total") == 15
    for peer in peers:
        peer.close()


def test_a_started_server_keeps_what_it_holds_out_of_the_collectors_rounds():
    """(In a process of its own: the collector's settings are the whole process's.)"""
    script = (
        "import gc; from chatroom.server.operations import memory; held = [[] for _ in range(1000)]; "
        "memory.settle_collector(); "
        "print(gc.get_threshold() == memory.COLLECTOR_THRESHOLDS != (700, 10, 10), gc.get_freeze_count() >= 1000)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT)
    assert result.stdout.split() == ["True", "True"], result.stderr


_FRAME_STACKS = """
import ctypes, sys, threading
import gevent
from gevent.event import Event
from chatroom.server.operations import memory

class MallocInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallocInfo
go = Event()

def wait_deep(depth):
    return wait_deep(depth - 1) if depth else go.wait()

def deep(depth):
    return deep(depth - 1) if depth else 0

# Greenlets whose frames (several chunks deep) were mapped before the install, freed after it.
older = [gevent.spawn(wait_deep, 400) for _ in range(20)]
gevent.sleep(0)
installed = sys.argv[1] == "install" and memory.frame_stacks_from_the_heap()
heap_before = libc.mallinfo2().uordblks
waiting = [gevent.spawn(wait_deep, 3) for _ in range(300)]
gevent.sleep(0)
heap_grew = libc.mallinfo2().uordblks - heap_before
go.set()
gevent.joinall(older + waiting, raise_error=True)
for _ in range(2000):
    gevent.spawn(wait_deep, 30).join()
thread = threading.Thread(target=deep, args=(400,))
thread.start(); thread.join()
print(installed, heap_grew)
"""


def test_greenlets_frame_stacks_come_from_the_heap_once_installed():
    """Each greenlet's frame stacks (a chunk of 16 KB) come from malloc's heap once installed,
    not from a mapping of their own; frames mapped before the install are freed as mappings.
    (In processes of their own: the allocator is the whole process's.)"""
    if importlib.util.find_spec("chatroom.server.operations._frame_stacks") is None:
        pytest.skip("_frame_stacks.c was not built here")
    grew = {}
    for how in ("install", "default"):
        command = [sys.executable, "-c", _FRAME_STACKS, how]
        result = subprocess.run(command, capture_output=True, text=True, timeout=WAIT)
        assert result.returncode == 0 and not result.stderr, result.stderr
        installed, grew[how] = result.stdout.split()
        assert installed == str(how == "install")
    assert int(grew["install"]) - int(grew["default"]) >= 300 * 16 * 1024 * 0.9
