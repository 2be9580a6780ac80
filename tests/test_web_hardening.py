"""The web port against hostile clients, on a real server process: floods of frames without
content beside a TCP neighbour, origins that a rebound DNS name could fake, requests a little
off the rules, and frames sent right behind the handshake."""

import base64
import os

import gevent
import pytest
from gevent import socket
from gevent.event import Event
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection, Request

from chatroom.codec import Decoder, encode
from chatroom.protocol import ListUsers, Login, SendTo, UserList
from chatroom.testing import OK, WAIT, assert_clean_log, free_port
from chatroom.websocket_client import binary_frame

pytestmark = pytest.mark.process


def raw_upgrade(address, host: str, origins: list[str], target: str = "/chat", after: bytes = b"") -> bytes:
    """Send a WebSocket upgrade with exactly these Host and Origin headers (and ``after`` right
    behind it); the head of the answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade"]
    lines += [f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", *(f"Origin: {o}" for o in origins)]
    return raw_request(address, ("\r\n".join(lines) + "\r\n\r\n").encode() + after)


def raw_request(address, request: bytes) -> bytes:
    """Send these bytes; the head of the answer."""
    with socket.create_connection(address, timeout=WAIT) as sock:
        sock.sendall(request)
        answer = b""
        with gevent.Timeout(WAIT):
            while b"\r\n\r\n" not in answer and (data := sock.recv(4096)):
                answer += data
    return answer


def test_an_origin_a_rebound_dns_name_could_fake_is_refused(web_server):
    host, port = web_server.web_address
    # A page at http://rebind.example:PORT whose name now points at 127.0.0.1: Host and Origin agree.
    answer = raw_upgrade(web_server.web_address, f"rebind.example:{port}", [f"http://rebind.example:{port}"])
    assert answer.startswith(b"HTTP/1.1 403")
    for origin in (f"http://{host}:{port}", f"http://localhost:{port}"):
        assert raw_upgrade(web_server.web_address, f"{host}:{port}", [origin]).startswith(b"HTTP/1.1 101")
    assert raw_upgrade(web_server.web_address, f"{host}:{port}", [f"http://{host}:{port + 1}"]).startswith(
        b"HTTP/1.1 403"
    )


def test_two_origin_headers_are_refused(web_server):
    host, port = web_server.web_address
    own = f"http://{host}:{port}"
    assert raw_upgrade(web_server.web_address, f"{host}:{port}", [own, own]).startswith(b"HTTP/1.1 403")
    assert raw_upgrade(web_server.web_address, f"{host}:{port}", ["https://evil.example", own]).startswith(
        b"HTTP/1.1 403"
    )


def test_only_the_chat_path_upgrades(web_server):
    host, port = web_server.web_address
    answer = raw_upgrade(web_server.web_address, f"{host}:{port}", [f"http://{host}:{port}"], target="/other")
    assert answer.startswith(b"HTTP/1.1 404")


def test_a_handshake_with_bytes_its_headers_cannot_hold_is_a_bad_request(web_server):
    """wsproto reads Host as IDNA and Connection as ASCII: what it cannot read is a 400, not a
    traceback (a fuzzed Host header found it)."""
    host, port = web_server.web_address
    origin = f"Origin: http://{host}:{port}".encode()
    upgrade = b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
    for host_value, connection in (
        (b"127.0.0.1\xab:1", b"Upgrade"),  # not ASCII
        (b"xn--zz.example", b"Upgrade"),  # ASCII, but no IDNA
        (f"{host}:{port}".encode(), b"Upgrade, \xe9"),
    ):
        head = b"GET /chat HTTP/1.1\r\nHost: " + host_value + b"\r\nConnection: " + connection
        answer = raw_request(web_server.web_address, b"\r\n".join((head, upgrade, origin)) + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400"), (host_value, connection, answer)
    assert raw_upgrade(web_server.web_address, f"{host}:{port}", [f"http://{host}:{port}"]).startswith(b"HTTP/1.1 101")
    assert_clean_log(web_server.log_text())


def test_the_page_may_not_be_framed(web_server):
    host, port = web_server.web_address
    with socket.create_connection(web_server.web_address, timeout=WAIT) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        with gevent.Timeout(WAIT):
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
    assert b"frame-ancestors 'none'" in head and b"X-Frame-Options: DENY" in head


def open_websocket(address):
    """(socket, wsproto) of a WebSocket opened with the page's own origin."""
    host, port = address
    sock = socket.create_connection(address, timeout=WAIT)
    ws = WSConnection(ConnectionType.CLIENT)
    origin = [("Origin", f"http://{host}:{port}")]
    sock.sendall(ws.send(Request(host=f"{host}:{port}", target="/chat", extra_headers=origin)))
    with gevent.Timeout(WAIT):
        while True:
            ws.receive_data(sock.recv(65536))
            event = next(iter(ws.events()), None)
            if isinstance(event, (AcceptConnection, RejectConnection)):
                assert isinstance(event, AcceptConnection)
                return sock, ws


def test_a_login_sent_right_behind_the_handshake_is_answered(web_server):
    host, port = web_server.web_address
    ws = WSConnection(ConnectionType.CLIENT)
    origin = [("Origin", f"http://{host}:{port}")]
    handshake = ws.send(Request(host=f"{host}:{port}", target="/chat", extra_headers=origin))
    replies: list = []
    with socket.create_connection(web_server.web_address, timeout=WAIT) as sock:
        # An eager client: the request and its first frames in one write.
        sock.sendall(handshake + _masked_binary(encode(Login("eager"))) + _masked_binary(encode(ListUsers())))
        decoder = Decoder.for_client()
        with gevent.Timeout(WAIT):
            while len(replies) < 2:
                ws.receive_data(sock.recv(65536))
                for event in ws.events():
                    if isinstance(event, BytesMessage):
                        replies += decoder.receive_data(event.data)
    assert replies == [OK, UserList(("eager",))]


def _masked_binary(payload: bytes) -> bytes:
    return binary_frame(payload, os.urandom(4))


def test_a_ping_flood_is_closed_and_never_stalls_a_tcp_neighbour(web_server, logged_in):
    flooder, ws = open_websocket(web_server.web_address)
    neighbour = logged_in(web_server.address, "neighbour")
    pings = b"".join(ws.send(Ping(b"x" * 16)) for _ in range(2000))
    closed = Event()

    def flood():
        try:
            with gevent.Timeout(WAIT * 2, False):
                while not closed.is_set():
                    flooder.sendall(pings)
        except OSError:
            pass  # the server closed it

    def watch():
        with gevent.Timeout(WAIT * 2, False):
            while data := flooder.recv(65536):
                ws.receive_data(data)
                if any(isinstance(event, CloseConnection) and event.code == 1008 for event in ws.events()):
                    closed.set()
                    return

    greenlets = [gevent.spawn(flood), gevent.spawn(watch)]
    try:
        for _ in range(200):
            with gevent.Timeout(1.0):  # a frozen server fails here, not after a minute
                assert neighbour.request(ListUsers()) == UserList(("neighbour",))
        assert closed.wait(WAIT * 2), "the flooder was never closed with 1008"
    finally:
        gevent.killall(greenlets)
        flooder.close()
    assert_clean_log(web_server.log_text())


def test_silent_web_connections_count_against_max_clients_and_keep_no_chat_client_out(server_process, peer_at):
    port = free_port()
    server = server_process("--web", f"127.0.0.1:{port}", "--max-clients", "5")
    server.wait_for_log(f"Web client on http://127.0.0.1:{port}/")
    silent = [peer_at(("127.0.0.1", port)) for _ in range(20)]  # connect, never send a request
    chat = peer_at(server.address)
    chat.login("alice")  # the oldest silent connections gave way
    closed = sum(_closed_soon(peer) for peer in silent)
    assert closed >= 20 - 4  # at most max-clients, less alice's place, still open
    server.wait_for_log("max_clients")


def _closed_soon(peer) -> bool:
    try:
        with gevent.Timeout(0.5):
            return peer.sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except gevent.Timeout:
        return False


def test_a_quiet_websocket_client_stays_connected_and_a_half_message_is_closed_while_parked(server_process, peer_at):
    port = free_port()
    server = server_process("--web", f"127.0.0.1:{port}", "--frame-timeout", "2")
    server.wait_for_log("Web client on")
    quiet, ws = open_websocket(("127.0.0.1", port))
    quiet.sendall(ws.send(BytesMessage(encode(Login("quiet")))))
    half, half_ws = open_websocket(("127.0.0.1", port))
    half.sendall(half_ws.send(BytesMessage(encode(ListUsers()))))  # (a whole frame ends the idle timer)
    half.sendall(half_ws.send(BytesMessage(encode(ListUsers())[:3], message_finished=False)))
    # Both park after a second of quiet; the half message ends at the frame timeout.
    server.wait_for_log("did not complete a frame in 2 s; closing")
    bob = peer_at(server.address)
    bob.login("bob")
    assert bob.request(SendTo("quiet", "still there?")) == OK
    assert "logout quiet" not in server.log_text()
    quiet.close()
    half.close()


def test_mutated_frames_from_registered_browsers_of_the_newest_version(web_server):
    """As tests/test_robustness.py's, over the WebSocket: each chat frame a message of its own
    (the browser's way), some mutated in their chat bytes, a few WebSocket frames at random;
    closed devices are replaced. The log stays clean and the chat goes on."""
    import random
    from contextlib import closing

    from wsproto.frame_protocol import FrameProtocol, Opcode

    from chatroom.protocol import EXTENSION_VERSION, Hello, Resume, TokenRequest
    from chatroom.room_frames import Join
    from chatroom.testing import hello_peer, random_websocket_frames
    from tests.test_robustness import _newest_client_frame, assert_pair_chats

    rng = random.Random(20261208)
    host, port = web_server.web_address
    names = [f"f{number % 6}" for number in range(8)]  # (f0 and f1 on two devices)

    def device(name):
        sock = socket.create_connection(web_server.web_address, timeout=WAIT)
        ws = WSConnection(ConnectionType.CLIENT)
        sock.sendall(
            ws.send(Request(host=f"{host}:{port}", target="/chat", extra_headers=[("Origin", f"http://{host}:{port}")]))
        )
        with gevent.Timeout(WAIT):
            while not any(isinstance(event, AcceptConnection) for event in ws.events()):
                ws.receive_data(sock.recv(65536))
        login = Resume(name, tokens[name])  # (a browser's way back: no password to hash each time)
        sock.sendall(b"".join(message(encode(m)) for m in (Hello(EXTENSION_VERSION), login, Join("#fz"))))
        return sock

    def message(data: bytes) -> bytes:
        return binary_frame(data, rng.randbytes(4))

    def read_until_closed(sock):
        frames = FrameProtocol(client=True, extensions=[])
        try:
            while data := sock.recv(1 << 20):
                frames.receive_bytes(data)
                if any(frame.opcode is Opcode.CLOSE for frame in frames.received_frames()):
                    return
        except Exception:  # noqa: BLE001 (the server closed first, or sent what ends the reading)
            pass
        finally:
            sock.close()

    tokens = {}
    for name in names[:6]:
        with closing(hello_peer(web_server.address, EXTENSION_VERSION, name, "pw")) as peer:
            tokens[name] = peer.request(TokenRequest()).token
    devices = [device(name) for name in names]
    readers = [gevent.spawn(read_until_closed, sock) for sock in devices]
    for _ in range(1000):
        gevent.idle()  # (the readers read: a closed device is seen as such)
        number = rng.randrange(len(devices))
        if readers[number].dead:
            devices[number] = device(names[number])
            readers[number] = gevent.spawn(read_until_closed, devices[number])
        chat = bytearray(_newest_client_frame(rng, len(names)))
        kind = rng.random()
        if kind < 0.1:
            for _ in range(rng.randint(1, 3)):  # (mostly in the body: a broken length ends the connection)
                at = rng.randrange(5, len(chat)) if len(chat) > 5 and rng.random() < 0.9 else rng.randrange(len(chat))
                chat[at] = rng.randrange(256)
        data = random_websocket_frames(rng, 2) if kind > 0.98 else message(bytes(chat))
        try:
            with gevent.Timeout(WAIT):
                devices[number].sendall(data)
        except OSError:
            pass  # (the server closed it meanwhile)
    assert_pair_chats(web_server.address)
    assert_clean_log(web_server.log_text())
    gevent.killall(readers)


def test_mutated_http_requests_get_an_answer_or_a_close_never_a_traceback(web_server):
    """The web port's HTTP side, fuzzed: page requests and WebSocket handshakes with bytes
    flipped, inserted, cut, repeated, and headers too long; each connection half-closed once
    sent, so that every one ends. The log stays clean and the page is still served."""
    import random

    from gevent.pool import Pool

    rng = random.Random(20261207)
    host, port = web_server.web_address
    key = base64.b64encode(b"0123456789abcdef").decode()
    requests = [
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n",
        f'HEAD /style.css HTTP/1.1\r\nHost: {host}\r\nIf-None-Match: "x"\r\n\r\n',
        f"POST /chat HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhello",
        f"GET /chat HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n\r\n",
    ]
    pieces = [b"\r\n", b"\x00", b"\xff\xfe", "é".encode(), b"%2e%2e/", b"xn--zz", b"X: " + b"a" * 9000 + b"\r\n"]

    def mutated(request: bytes) -> bytes:
        data = bytearray(request)
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(len(data) + 1)
            choice = rng.random()
            if choice < 0.3 and at < len(data):
                data[at] = rng.randrange(256)
            elif choice < 0.5:
                data[at:at] = rng.choice(pieces)
            elif choice < 0.7:
                del data[at : at + rng.randint(1, 12)]
            elif choice < 0.8:
                data = data * 2
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 40))
        return bytes(data)

    def send(request: bytes) -> None:
        with socket.create_connection(web_server.web_address, timeout=WAIT) as sock:
            try:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                with gevent.Timeout(WAIT):
                    while sock.recv(65536):
                        pass
            except OSError:
                pass  # (reset: the server closed with bytes unread)

    Pool(16).map(send, [mutated(rng.choice(requests).encode()) for _ in range(300)])
    assert raw_request(web_server.web_address, requests[0].encode()).startswith(b"HTTP/1.1 200")
    assert_clean_log(web_server.log_text())
