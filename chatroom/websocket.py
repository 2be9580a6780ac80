"""The chat over a WebSocket: each binary message carries exactly one protocol frame.

:class:`WebSocketStream` wraps a connected socket and its wsproto connection (either side)
with a socket's face: ``recv()`` gives the frames that arrive, ``send()`` takes frames in any
pieces and sends each as one message. The server's sessions use it for browsers; the bench
uses it, with :func:`connect`, to measure the WebSocket path.
"""

import logging
import socket as std_socket

from gevent import socket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection, Request, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .protocol import HEADER_SIZE, MAX_BODY

log = logging.getLogger(__name__)

RECV_SIZE = 65536
MAX_MESSAGE = HEADER_SIZE + MAX_BODY
# WebSocket close codes.
POLICY_VIOLATION, TOO_BIG, NORMAL = 1008, 1009, 1000


def connect(address, timeout: float = 30.0) -> "WebSocketStream":
    """A client WebSocket to a chatroom server's --web address (with the page's origin)."""
    host, port = address
    sock = socket.create_connection((host, port), timeout=timeout)
    ws = WSConnection(ConnectionType.CLIENT)
    origin = f"http://{host}:{port}".encode()
    sock.sendall(ws.send(Request(host=f"{host}:{port}", target="/chat", extra_headers=[(b"Origin", origin)])))
    while True:
        data = sock.recv(RECV_SIZE)
        if not data:
            raise ConnectionError("the server closed the connection during the handshake")
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                sock.settimeout(None)
                return WebSocketStream(sock, ws)
            if isinstance(event, RejectConnection):
                sock.close()
                raise ConnectionError(f"WebSocket refused: HTTP {event.status_code}")


class WebSocketStream:
    """A WebSocket with a socket's face, for a Session: recv() gives the frames that arrive,
    one per binary message; send() takes frames, in any pieces, and sends each as a message."""

    transport = "websocket"

    def __init__(self, sock, ws: WSConnection):
        self.raw = sock
        self._ws = ws
        self._incoming = bytearray()  # the message being received, while it is in fragments
        self._outgoing = bytearray()  # bytes of a frame not yet whole, to send
        self._closed = False  # a close frame has gone out (or the stream ended): nothing more may
        self.refused = False  # the peer broke the rules, and may still be sending
        # A server's frames are not masked, so a header is all they need; a client's must be
        # masked: wsproto builds those.
        self._frame = self._client_frame if ws.client else binary_frame

    def fileno(self) -> int:
        return self.raw.fileno()

    def recv(self, size: int = RECV_SIZE) -> bytes:
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
                if len(self._incoming) > MAX_MESSAGE:
                    return self._fail(TOO_BIG, "a message longer than a frame may be")
                if event.message_finished:
                    message, self._incoming = bytes(self._incoming), bytearray()
                    if len(message) < HEADER_SIZE or int.from_bytes(message[1:5], "big") != len(message) - HEADER_SIZE:
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
        self.refused = True
        self._closed = True
        self._send_quietly(CloseConnection(code=code, reason=reason))
        return b""

    def _send_quietly(self, event) -> None:
        try:
            self.raw.sendall(self._ws.send(event))
        except (OSError, LocalProtocolError, RemoteProtocolError):
            pass

    def send(self, data, *_flags_and_timeout) -> int:
        """Send the frames in data, each as a binary message (a frame cut short waits for its
        end in the next call); all of data is taken, and dropped once a close frame has gone."""
        if self._closed:
            return len(data)
        self._outgoing += data
        out = bytearray()
        view = self._outgoing
        offset = 0
        while len(view) - offset >= HEADER_SIZE:
            end = offset + HEADER_SIZE + int.from_bytes(view[offset + 1 : offset + HEADER_SIZE], "big")
            if end > len(view):
                break
            out += self._frame(view[offset:end])
            offset = end
        del self._outgoing[:offset]
        if out:
            self.raw.sendall(out)
        return len(data)

    def _client_frame(self, message) -> bytes:
        return self._ws.send(BytesMessage(data=bytes(message)))

    def sendall(self, data) -> None:
        self.send(data)

    def setsockopt(self, *args) -> None:
        self.raw.setsockopt(*args)

    def shutdown(self, how: int) -> None:
        if how != std_socket.SHUT_RD and not self._closed:
            self._closed = True
            self._send_quietly(CloseConnection(code=NORMAL))
        self.raw.shutdown(how)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._send_quietly(CloseConnection(code=NORMAL))
        self.raw.close()


def binary_frame(message, mask_key: bytes = b"") -> bytes:
    """One unfragmented binary WebSocket frame (RFC 6455 section 5.2): unmasked from a server,
    masked with the 4-byte mask_key from a client."""
    size = len(message)
    mask_bit = 0x80 if mask_key else 0
    if size < 126:
        head = bytes((0x82, mask_bit | size))
    elif size < 1 << 16:
        head = bytes((0x82, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x82, mask_bit | 127)) + size.to_bytes(8, "big")
    if not mask_key:
        return head + bytes(message)
    # XOR as one big integer: the whole message at C speed, not a byte at a time.
    mask = (mask_key * (size // 4 + 1))[:size]
    masked = int.from_bytes(message, "big") ^ int.from_bytes(mask, "big")
    return head + mask_key + masked.to_bytes(size, "big")
