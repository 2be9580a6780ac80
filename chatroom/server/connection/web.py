"""The browser's way in: a page, and the chat over WebSocket, on a port of its own (--web).

An HTTP request either asks for one of the page's files, served as they are, or upgrades to
a WebSocket at /chat (wsproto does the handshake, sans-I/O, as our codec does the chat's). The
connection then becomes a :class:`~.websocket.WebSocketStream`, a Stream for the session: web
users are sessions like any other (same directory, limits, cluster). Each binary message
carries exactly one protocol frame.

A page from anywhere may ask a browser to open a WebSocket to this port, so the ``Origin``
must be one the operator named (--web-origin), or the page's own at an address no DNS answer
can move: an IP address or localhost, with the port listened on. (Checking it against the
request's Host header would let a rebound DNS name through: its page and Host agree.)
"""

import ipaddress
import logging
from importlib import resources

import gevent
import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.utilities import RemoteProtocolError

from .websocket import WebSocketStream

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 10.0
CHAT_PATH = "/chat"
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/protocol.js": ("protocol.js", "text/javascript; charset=utf-8"),
    "/text.js": ("text.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


class NotWebSocket(Exception):
    """The request was for a page file (answered) or was refused (answered); no session."""


def accept(sock, allowed_origins: set[str] | None, secure: bool, port: int, frame_timeout: float):
    """Read one HTTP request from sock: answer it if it is for a file, else complete the
    WebSocket handshake and return a WebSocketStream. ``port``: the one listened on (the
    page's own origin has it). Raises NotWebSocket, OSError, or gevent.Timeout."""
    with gevent.Timeout(REQUEST_TIMEOUT):
        head = _read_head(sock)
        method, target, headers = _parse_head(head)
        if "websocket" not in [value.lower() for value in headers.get("upgrade", [])]:
            _serve_file(sock, method, target)
            raise NotWebSocket()
        if target.split("?", 1)[0] != CHAT_PATH:
            _respond(sock, "404 Not Found", b"the chat is at /chat\n")
            raise NotWebSocket()
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(head)
            next(event for event in ws.events() if isinstance(event, Request))
        except (RemoteProtocolError, StopIteration, UnicodeError):
            # (UnicodeError: wsproto reads Host as IDNA, Connection as ASCII.)
            _respond(sock, "400 Bad Request", b"not a WebSocket handshake\n")
            raise NotWebSocket() from None
        origins = headers.get("origin", [])
        if len(origins) != 1 or not _origin_allowed(origins[0], allowed_origins, secure, port):
            log.info("WebSocket from origin %r refused", ", ".join(origins))
            sock.sendall(ws.send(RejectConnection(status_code=403)))
            raise NotWebSocket()
        sock.sendall(ws.send(AcceptConnection()))
        stream = WebSocketStream(sock, ws, frame_timeout)
        # Frames sent right behind the handshake (a LOGIN pipelined with it) came in its read.
        trailing = head[head.index(b"\r\n\r\n") + 4 :]
        if trailing:
            stream.take_early(trailing)
    return stream


def _origin_allowed(origin: str, allowed: set[str] | None, secure: bool, port: int) -> bool:
    """Whether a page of origin may open the chat: one of those allowed, or by default the
    page's own, served at an IP address or at localhost (which no DNS answer can move)."""
    if allowed:
        return origin in allowed
    scheme, _, rest = origin.partition("://")
    host, colon, origin_port = rest.rpartition(":")
    if scheme != ("https" if secure else "http") or not colon or origin_port != str(port):
        return False
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


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
    """(method, target, {lower-case name: [values]}) of the request, parsed by h11 (the HTTP
    parser wsproto's handshake runs on); an empty method for what is not HTTP."""
    http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    try:
        http.receive_data(head)
        request = http.next_event()
    except h11.RemoteProtocolError:
        return "", "", {}
    if not isinstance(request, h11.Request):
        return "", "", {}
    headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
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
        "Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'\r\n"
        "X-Frame-Options: DENY\r\n"
        "Connection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
