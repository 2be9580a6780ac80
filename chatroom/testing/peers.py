"""Peers that speak the raw protocol, and stand-in servers that misbehave on purpose."""

import socket as stdlib_socket

import gevent
from gevent import socket
from gevent.server import StreamServer

from ..codec import PUSHED, Decoder, encode
from ..protocol import Hello, Login, Register, Response, Status
from .waiting import WAIT

OK_BYTES = b"\x82\x00\x00\x00\x01\x00"
FAILURE_BYTES = b"\x82\x00\x00\x00\x01\x01"
MALFORMED_BYTES = b"\x82\x00\x00\x00\x01\x02"
OK = Response(Status.OK)
FAILURE = Response(Status.FAILURE)


def failure(reason, detail: str = "") -> Response:
    """FAILURE with its reason, as a client of version 2 or later gets it."""
    return Response(Status.FAILURE, reason, detail)


MALFORMED = Response(Status.MALFORMED)


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
        self.pushed: list = []

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

    def reply(self, message):
        """Send one message and return its reply; what the server pushed meanwhile (messages,
        room events, presence) waits in ``pushed``."""
        self.send(message)
        while type(event := self.next_event()) in PUSHED:
            self.pushed.append(event)
        return event

    def next_push(self):
        """The next frame the server pushed (kept by reply(), or still to come)."""
        return self.pushed.pop(0) if self.pushed else self.next_event()

    def pushes_of(self, kind, count: int) -> list:
        """The next count pushed frames of type kind (others pushed meanwhile are passed
        over), within twice WAIT."""
        got: list = []
        with gevent.Timeout(WAIT * 2):
            while len(got) < count:
                if type(event := self.next_push()) is kind:
                    got.append(event)
        return got

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


def extended(address, name: str | None = None, password: str = "pw", version: int = 1) -> Peer:
    """A Peer that said HELLO (version 1 unless told); with name, one that registered it
    (with password) too."""
    return hello_peer(address, version, name, password)


def hello_peer(address, version: int, name: str | None = None, password: str | None = None) -> Peer:
    """A Peer that said HELLO version; with name, logged in as it: registering it, with a
    password, or else with LOGIN."""
    peer = Peer(address)
    try:
        assert peer.reply(Hello(version)) == OK
        if name is not None:
            assert peer.reply(Register(name, password) if password is not None else Login(name)) == OK
    except BaseException:
        peer.close()
        raise
    return peer


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


def kernel_socket_pair():
    """(the server's end, the client's end) of a connected local socket pair, as the server
    holds a plain TCP connection (the kernel's socket, for a TcpStream) and a test reads it
    (gevent's socket, whose reads wait cooperatively)."""
    ours, theirs = stdlib_socket.socketpair()
    return ours, socket.socket(fileno=theirs.detach())
