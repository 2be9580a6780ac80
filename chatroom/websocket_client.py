"""The chat over a WebSocket, as a client speaks it: each binary message carries exactly one
protocol frame.

:func:`connect` opens a WebSocket to a server's --web port (wsproto does the handshake) and
gives a :class:`WebSocketClient`, with a socket's face: the bench measures the WebSocket path
with it. :func:`binary_frame` builds one message, a client's (masked) or a server's; the
server's end, which must take whatever a browser or an attacker sends, is
:class:`chatroom.server.web.WebSocketStream`.
"""

import random

from gevent import socket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request

from .codec import split_frames

RECV_SIZE = 65536


def connect(address, timeout: float = 30.0) -> "WebSocketClient":
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
                return WebSocketClient(sock)
            if isinstance(event, RejectConnection):
                sock.close()
                raise ConnectionError(f"WebSocket refused: HTTP {event.status_code}")


class WebSocketClient:
    """A client's end of an open WebSocket, framed by hand: each protocol frame goes out as
    one masked binary message, and the payloads of the server's messages come in (a server's
    frames are simple: unmasked, whole). Framing through wsproto's events here made the load
    generator, not the server, the bottleneck."""

    def __init__(self, sock):
        self.raw = sock
        self._unread = bytearray()

    def sendall(self, frames: bytes) -> None:
        """Send whole protocol frames, each as a message."""
        whole, _ = split_frames(frames)
        self.raw.sendall(b"".join(binary_frame(frame, random.randbytes(4)) for frame in whole))

    def recv(self, size: int) -> bytes:
        """The payloads of the next whole binary messages; b"" once the server closes."""
        while data := self.raw.recv(size):
            self._unread += data
            payloads, closing = _take_messages(self._unread)
            if closing:
                return b""
            if payloads:
                return payloads
        return b""

    def setsockopt(self, *args) -> None:
        self.raw.setsockopt(*args)

    def close(self) -> None:
        self.raw.close()


def _take_messages(unread: bytearray) -> tuple[bytes, bool]:
    """Take the whole frames from the start of unread (a server's: unmasked, unfragmented):
    the binary payloads, and whether a close frame came."""
    payloads = bytearray()
    at, size = 0, len(unread)
    while size - at >= 2:
        opcode, length = unread[at] & 0x0F, unread[at + 1] & 0x7F
        head = {126: 4, 127: 10}.get(length, 2)
        if size - at < head:
            break
        if head > 2:
            length = int.from_bytes(unread[at + 2 : at + head], "big")
        if size - at < head + length:
            break
        if opcode == 0x8:
            return bytes(payloads), True
        if opcode == 0x2:
            payloads += unread[at + head : at + head + length]
        at += head + length
    del unread[:at]
    return bytes(payloads), False


def binary_frame(message, mask_key: bytes = b"") -> bytes:
    """One unfragmented binary WebSocket frame (RFC 6455 section 5.2): unmasked from a server,
    masked with the 4-byte mask_key from a client."""
    return _frame(0x2, message, mask_key)


def close_frame(code: int, reason: str = "") -> bytes:
    """A server's close frame with its status code and reason (cut to fit a control frame)."""
    return _frame(0x8, code.to_bytes(2, "big") + reason.encode()[:123], b"")


def _frame(opcode: int, message, mask_key: bytes) -> bytes:
    size = len(message)
    first = 0x80 | opcode  # FIN: never fragmented
    mask_bit = 0x80 if mask_key else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        head = bytes((first, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + size.to_bytes(8, "big")
    if not mask_key:
        return head + bytes(message)
    # XOR as one big integer: the whole message at C speed, not a byte at a time.
    mask = (mask_key * (size // 4 + 1))[:size]
    masked = int.from_bytes(message, "big") ^ int.from_bytes(mask, "big")
    return head + mask_key + masked.to_bytes(size, "big")
