"""The browser's way in: a page, and the chat over WebSocket, on a port of its own (--web).

An HTTP request either asks for one of the page's files, served as they are, or upgrades to
a WebSocket (wsproto does the handshake, sans-I/O, as our codec does the chat's). The
connection then becomes a :class:`WebSocketStream`, a :class:`~.streams.Stream` for the session:
web users are sessions like any other (same directory, limits, cluster). Each binary message
carries exactly one protocol frame.
"""

import logging
from importlib import resources

import gevent
import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection, Request, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ...codec import is_one_frame, split_frames
from ...protocol import MAX_FRAME
from ...websocket_client import binary_frame
from . import sockets

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 10.0
RECV_SIZE = 65536
# WebSocket close codes.
POLICY_VIOLATION, TOO_BIG, NORMAL = 1008, 1009, 1000
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


class NotWebSocket(Exception):
    """The request was for a page file (answered) or was refused (answered); no session."""


def accept(sock, allowed_origins: set[str] | None, secure: bool):
    """Read one HTTP request from sock: answer it if it is for a file, else complete the
    WebSocket handshake and return a WebSocketStream. Raises NotWebSocket, OSError, or
    gevent.Timeout."""
    with gevent.Timeout(REQUEST_TIMEOUT):
        head = _read_head(sock)
        method, target, headers = _parse_head(head)
        if headers.get("upgrade", "").lower() != "websocket":
            _serve_file(sock, method, target)
            raise NotWebSocket()
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(head)
            request = next(event for event in ws.events() if isinstance(event, Request))
        except (RemoteProtocolError, StopIteration):
            _respond(sock, "400 Bad Request", b"not a WebSocket handshake\n")
            raise NotWebSocket() from None
        origin = headers.get("origin", "")
        own = f"{'https' if secure else 'http'}://{request.host}"
        if origin not in (allowed_origins or {own}):
            log.info("WebSocket from origin %r refused", origin)
            sock.sendall(ws.send(RejectConnection(status_code=403)))
            raise NotWebSocket()
        sock.sendall(ws.send(AcceptConnection()))
    return WebSocketStream(sock, ws)


def _read_head(sock) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > MAX_REQUEST_HEAD:
            _respond(sock, "431 Request Header Fields Too Large", b"")
            raise NotWebSocket()
        data = sock.recv(4096)
        if not data:
            raise NotWebSocket()
        head += data
    return head


def _parse_head(head: bytes):
    """(method, target, {lower-case name: value}) of the request, parsed by h11 (the HTTP
    parser wsproto's handshake runs on); an empty method for what is not HTTP."""
    http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    try:
        http.receive_data(head)
        request = http.next_event()
    except h11.RemoteProtocolError:
        return "", "", {}
    if not isinstance(request, h11.Request):
        return "", "", {}
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers}
    return request.method.decode("latin-1"), request.target.decode("latin-1"), headers


def _serve_file(sock, method, target):
    page = PAGE_FILES.get(target.split("?", 1)[0])
    if method not in ("GET", "HEAD") or page is None:
        _respond(sock, "404 Not Found", b"not found\n")
        return
    name, content_type = page
    body = resources.files("chatroom.web").joinpath(name).read_bytes()
    _respond(sock, "200 OK", body if method == "GET" else b"", content_type, len(body))


def _respond(sock, status: str, body: bytes, content_type="text/plain; charset=utf-8", length=None):
    size = len(body) if length is None else length
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n"
        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
        "Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:\r\n"
        "Connection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + body)


class WebSocketStream:
    """The server's end of a WebSocket, as a Stream for a Session: receive() gives the frames
    that arrive, one per binary message; send() takes frames, in any pieces, and sends each as
    a message. What arrives is parsed by wsproto: it may come from anyone."""

    transport = "websocket"
    sends_without_waiting = False

    def __init__(self, sock, ws: WSConnection):
        self.raw = sock
        self._ws = ws
        self._incoming = bytearray()  # the message being received, while it is in fragments
        self._outgoing = bytearray()  # bytes of a frame not yet whole, to send
        self._closed = False  # a close frame has gone out (or the stream ended): nothing more may
        self._refused = False  # the peer broke the rules, and may still be sending

    def fileno(self) -> int:
        return self.raw.fileno()

    def receive(self) -> bytes:
        """The frames of the next whole messages; b"" at the end (or after a violation, when
        the connection is being closed)."""
        while not self._closed:
            data = self.raw.recv(RECV_SIZE)
            try:
                self._ws.receive_data(data or None)
                frames = self._take_events()
            except RemoteProtocolError:
                return self._fail(POLICY_VIOLATION, "not WebSocket")
            if frames or not data:
                return frames
        return b""

    def _take_events(self) -> bytes:
        frames = bytearray()
        for event in self._ws.events():
            if isinstance(event, BytesMessage):
                self._incoming += event.data
                if len(self._incoming) > MAX_FRAME:
                    return self._fail(TOO_BIG, "a message longer than a frame may be")
                if event.message_finished:
                    message, self._incoming = bytes(self._incoming), bytearray()
                    if not is_one_frame(message):
                        return self._fail(POLICY_VIOLATION, "a message must be exactly one frame")
                    frames += message
            elif isinstance(event, TextMessage):
                return self._fail(POLICY_VIOLATION, "frames go in binary messages")
            elif isinstance(event, Ping):
                self.raw.sendall(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._closed = True
                # A close frame is answered with one; the end of the stream (the network
                # dropped, the peer vanished) leaves nobody to answer.
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._send_quietly(event.response())
                return bytes(frames)
        return bytes(frames)

    def _fail(self, code: int, reason: str) -> bytes:
        log.info("WebSocket closed: %s", reason)
        self._refused = True
        self._closed = True
        self._send_quietly(CloseConnection(code=code, reason=reason))
        return b""

    def _send_quietly(self, event) -> None:
        try:
            self.raw.sendall(self._ws.send(event))
        except (OSError, LocalProtocolError, RemoteProtocolError):
            pass

    def send(self, data) -> int:
        """Send the frames in data, each as a binary message (a frame cut short waits for its
        end in the next call); all of data is taken, and dropped once a close frame has gone."""
        if self._closed:
            return len(data)
        self._outgoing += data
        frames, taken = split_frames(self._outgoing)
        del self._outgoing[:taken]
        if frames:
            # A server's frames are not masked: a header is all a message needs.
            self.raw.sendall(b"".join(map(binary_frame, frames)))
        return len(data)

    def try_send(self, data) -> int:
        raise BlockingIOError()  # sending a message always waits for the whole of it

    def shut_down(self) -> None:
        sockets.shut_down(self.raw)

    def stop_reading(self) -> None:
        sockets.stop_reading(self.raw)

    def discard_unsent(self) -> None:
        sockets.discard_unsent(self.raw)

    def close(self, gracefully: bool = False) -> None:
        if gracefully or self._refused:
            # It has had its close frame, and may still be sending: a plain close would reset
            # the connection, and the reset could destroy the close frame before it is read.
            sockets.close_gracefully(self.raw)
            return
        if not self._closed:
            self._closed = True
            self._send_quietly(CloseConnection(code=NORMAL))
        self.raw.close()
