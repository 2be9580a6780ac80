"""The server's end of a WebSocket: a :class:`~.streams.Stream` whose frames arrive one per
binary message, parsed by wsproto (what arrives may come from anyone).

A WebSocket connection gets the same fair share as a TCP one. Control frames (pings, pongs)
and empty fragments carry no protocol frame, so the session's rate limit never sees them:
here they are budgeted instead. Pings are answered while a token bucket has tokens
(PING_RATE a second); more than CONTROL_FLOOD frames of that kind within a second close the
connection with 1008. A read that brings no whole message yields to the other connections
before the next one, and a message must be whole within the frame timeout of its first byte,
or the connection is closed with 1008 (it would hold its buffer for good).
"""

import logging
import time

import gevent
from gevent.lock import Semaphore
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ...codec import is_one_frame, split_frames
from ...protocol import MAX_FRAME
from ...websocket_client import binary_frame, close_frame
from . import sockets
from .limits import TokenBucket
from .streams import OverASocket

log = logging.getLogger(__name__)

RECV_SIZE = 65536
# WebSocket close codes.
POLICY_VIOLATION, TOO_BIG, NORMAL = 1008, 1009, 1000
PING_RATE = 10.0  # pings answered a second (in bursts of as many); more go unanswered
CONTROL_FLOOD = 100  # control frames and empty fragments within a second that close the connection


class _Unfinished(Exception):
    """A message was not finished within the frame timeout."""


class WebSocketStream(OverASocket):
    """receive() gives the frames that arrive, one per binary message; send() takes frames,
    in any pieces, and sends each as a message."""

    transport = "websocket"
    without_waiting = False

    def __init__(self, sock, ws: WSConnection, frame_timeout: float = 30.0):
        self._sock = sock
        self._ws = ws
        self._frame_timeout = frame_timeout
        self._incoming = bytearray()  # the message being received, while it is in fragments
        self._outgoing = bytearray()  # bytes of a frame not yet whole, to send
        self._closed = False  # a close frame has gone out (or the stream ended): nothing more may
        self._refused = False  # the peer broke the rules, and may still be sending
        self._sending = Semaphore()  # pongs and messages never interleave on the socket
        self._message_began: float | None = None  # when the unfinished message's first byte came
        self._at_boundary = True  # the last read ended with a whole frame (and no message unfinished)
        self._early = False  # take_early() gave it bytes no read has taken yet
        self._pings = TokenBucket(PING_RATE)
        self._control_window = 0.0  # the second CONTROL_FLOOD counts in...
        self._control_count = 0  # ...and how many frames without content came in it

    def take_early(self, data: bytes) -> None:
        """Bytes that came with the handshake (a LOGIN pipelined with it): the first receive()
        gives their frames."""
        self._ws.receive_data(data)
        self._early = True

    def buffered(self) -> bool:
        return self._early

    def receive(self) -> bytes:
        """The frames of the next whole messages; b"" at the end (or after a violation, when
        the connection is being closed)."""
        frames = self._take_events() if self._early else b""  # what came with the handshake
        self._early = False
        while not frames and not self._closed:
            try:
                data = self._read()
            except _Unfinished:
                return self._fail(POLICY_VIOLATION, f"a message was not finished in {self._frame_timeout:g} s")
            try:
                self._ws.receive_data(data or None)
            except RemoteProtocolError as err:
                return self._fail(POLICY_VIOLATION, f"not WebSocket ({err})")
            frames = self._take_events()
            if not data:
                return frames
            if self._at_boundary:
                self._message_began = None
            elif self._message_began is None:
                self._message_began = time.monotonic()  # a message (or a frame) has begun
            if not frames:
                gevent.sleep(0)  # a flood of frames without content must not keep others waiting
        return frames

    def unfinished_for(self) -> float | None:
        if self._message_began is None:
            return None
        return max(0.0, self._message_began + self._frame_timeout - time.monotonic())

    def _read(self) -> bytes:
        """The next bytes; _Unfinished once an unfinished message has had its time. (Its own
        exception: a timeout of the caller's, such as the session's wait before it parks,
        must reach the caller, not close the connection.)"""
        left = self.unfinished_for()
        if left is None:
            return self._sock.recv(RECV_SIZE)
        with gevent.Timeout(max(left, 0.001), _Unfinished):
            return self._sock.recv(RECV_SIZE)

    def _take_events(self) -> bytes:
        try:
            return self._take(self._ws.events())
        except RemoteProtocolError as err:
            return self._fail(POLICY_VIOLATION, f"not WebSocket ({err})")

    def _take(self, events) -> bytes:
        """The frames of the messages events finish. Events are parsed one at a time, as taken:
        a flood is refused at its 101st frame, not after parsing all that came in one read."""
        frames = bytearray()
        # Bytes that made no event are a frame begun; a fragment leaves its message unfinished.
        self._at_boundary = False
        for event in events:
            if isinstance(event, BytesMessage):
                if not event.data and not event.message_finished and self._flooding():
                    return self._fail(POLICY_VIOLATION, "too many empty fragments")
                self._incoming += event.data
                if len(self._incoming) > MAX_FRAME:
                    return self._fail(TOO_BIG, "a message longer than a frame may be")
                if event.message_finished:
                    message, self._incoming = bytes(self._incoming), bytearray()
                    if not is_one_frame(message):
                        return self._fail(POLICY_VIOLATION, "a message must be exactly one frame")
                    frames += message
                self._at_boundary = event.message_finished
            elif isinstance(event, TextMessage):
                return self._fail(POLICY_VIOLATION, "frames go in binary messages")
            elif isinstance(event, (Ping, Pong)):
                self._at_boundary = not self._incoming
                if self._flooding():
                    return self._fail(POLICY_VIOLATION, "too many control frames")
                if isinstance(event, Ping) and not self._pings.take():
                    self._send_quietly(event.response())
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.OPEN:
                    # Not the peer's close: wsproto's word for a frame that broke the protocol.
                    return self._fail(event.code, event.reason or "protocol error")
                self._closed = True
                # A close frame is answered with one; the end of the stream (the network
                # dropped, the peer vanished) leaves nobody to answer.
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._send_quietly(event.response())
                return bytes(frames)
        return bytes(frames)

    def _flooding(self) -> bool:
        """Count one frame without content; whether the second's count is past CONTROL_FLOOD."""
        now = time.monotonic()
        if now - self._control_window >= 1.0:
            self._control_window, self._control_count = now, 0
        self._control_count += 1
        return self._control_count > CONTROL_FLOOD

    def _fail(self, code: int, reason: str) -> bytes:
        log.info("WebSocket closed: %s", reason)
        self._refused = True
        if not self._closed:
            self._closed = True
            # wsproto refuses to send once it has seen a protocol error: then the close frame
            # is built by hand, so that the peer still learns why.
            try:
                data = self._ws.send(CloseConnection(code=code, reason=reason))
            except LocalProtocolError:
                data = close_frame(code, reason)
            self._send_raw(data)
        return b""

    def _send_quietly(self, event) -> None:
        try:
            self._send_raw(self._ws.send(event))
        except LocalProtocolError:
            pass

    def _send_raw(self, data: bytes) -> None:
        try:
            with self._sending:
                self._sock.sendall(data)
        except OSError:
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
            with self._sending:
                self._sock.sendall(b"".join(map(binary_frame, frames)))
        return len(data)

    def try_send(self, data) -> int:
        raise BlockingIOError()  # sending a message always waits for the whole of it

    def receive_now(self) -> bytes:
        raise BlockingIOError()  # (never called: what arrived may be part of a message)

    def close(self, gracefully: bool = False) -> None:
        if gracefully or self._refused:
            # It has had its close frame, and may still be sending: a plain close would reset
            # the connection, and the reset could destroy the close frame before it is read.
            sockets.read_out(self._sock, self._read_socket)
        elif not self._closed:
            self._closed = True
            self._send_quietly(CloseConnection(code=NORMAL))
        self._sock.close()

    def _read_socket(self) -> bytes:
        return self._sock.recv(RECV_SIZE)
