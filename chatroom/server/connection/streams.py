"""What a Session needs of a connection, whatever carries it: TCP, TLS or a WebSocket.

:class:`Stream` is that contract; :class:`TcpStream` fulfils it for a TCP socket,
:class:`TlsStream` for a TLS one, and :class:`~.web.WebSocketStream` for a browser's
WebSocket. The session and its outbox deal in frames and in these few methods, never in
socket options.
"""

import _socket
from typing import Any, Protocol

import gevent
from gevent.ssl import SSLSocket

from . import sockets

RECV_SIZE = 65536
_READ, _WRITE = 1, 2  # (libev's events)


class Stream(Protocol):
    transport: str  # "tcp", "tls", "websocket": the metrics' label
    without_waiting: bool  # whether try_send and receive_now can do anything (a plain TCP socket)

    def fileno(self) -> int: ...

    def receive(self) -> bytes:
        """The next bytes of frames from the client (waiting for them); b"" at the end."""
        ...

    def receive_now(self) -> bytes:
        """The bytes that have arrived, without waiting (b"" at the end). Raises
        BlockingIOError when none have (only called when without_waiting)."""
        ...

    def buffered(self) -> bool:
        """Whether bytes have arrived that the socket no longer shows as readable (taken in
        with a handshake): receive() gives them at once."""
        ...

    def unfinished_for(self) -> float | None:
        """How long a message the stream holds unfinished has left of the frame timeout (a
        WebSocket message in fragments), or None if it holds none: the session must not park
        such a connection without a timer."""
        ...

    def send(self, data) -> int:
        """Send some of data, waiting until the connection takes some; how much it took."""
        ...

    def try_send(self, data) -> int:
        """Send what the connection takes right now, without waiting; how much. Raises
        BlockingIOError when it takes nothing (only called when without_waiting)."""
        ...

    def shut_down(self) -> None:
        """End the connection from any greenlet: its reader wakes to an end of stream."""
        ...

    def stop_reading(self) -> None:
        """Make the reader see an end of stream, while sending still works."""
        ...

    def discard_unsent(self) -> None:
        """Make close() reset the connection rather than linger to send what is queued in the
        kernel: for a client that stopped reading."""
        ...

    def close(self, gracefully: bool = False) -> None:
        """Close; ``gracefully``: the client may still be sending (a frame too large), so
        send FIN, read and drop what still comes for a moment, then close."""
        ...


class OverASocket:
    """What a stream over a socket (its ``_sock``) does alike: TCP, TLS or a WebSocket's."""

    __slots__ = ()
    _sock: Any

    def fileno(self) -> int:
        return self._sock.fileno()

    def unfinished_for(self) -> float | None:
        return None  # a frame begun is the session's decoder's to time

    def shut_down(self) -> None:
        sockets.shut_down(self._sock)

    def stop_reading(self) -> None:
        sockets.stop_reading(self._sock)

    def discard_unsent(self) -> None:
        sockets.discard_unsent(self._sock)


class TcpStream(OverASocket):
    """A plain TCP connection as a Stream: the kernel's socket itself, non-blocking, waiting
    through a watcher made for the wait. (gevent's socket object keeps two watchers and a
    layer of Python for every connection, waiting or not: 4 µs and 0.36 KB of each, and two
    system calls of each login, measured.)"""

    __slots__ = ("_sock", "_reading", "_writing")

    transport = "tcp"
    without_waiting = True

    def __init__(self, sock: _socket.socket):
        sock.setblocking(False)
        self._sock = sock
        # The watcher a receive or a send waits on, while one does: close() wakes it.
        self._reading: Any = None
        self._writing: Any = None

    def receive(self) -> bytes:
        while True:
            try:
                return self._sock.recv(RECV_SIZE)
            except BlockingIOError:
                self._wait_for(_READ)

    def receive_now(self) -> bytes:
        return self._sock.recv(RECV_SIZE)

    def send(self, data) -> int:
        while True:
            try:
                return self._sock.send(data)
            except BlockingIOError:
                self._wait_for(_WRITE)

    def try_send(self, data) -> int:
        return self._sock.send(data)

    def _wait_for(self, events: int) -> None:
        waiting = "_reading" if events == _READ else "_writing"
        hub = gevent.get_hub()
        watcher = hub.loop.io(self._sock.fileno(), events)
        setattr(self, waiting, watcher)
        try:
            hub.wait(watcher)
        finally:
            setattr(self, waiting, None)
            watcher.close()

    def buffered(self) -> bool:
        return False

    def close(self, gracefully: bool = False) -> None:
        if gracefully:
            sockets.read_out(self._sock, self.receive)
        # A greenlet waiting to read or send is woken with an error first, and the socket is
        # closed after that: its number, free again, may be a new connection's at once.
        waits = (self._reading, self._writing)
        self._reading = self._writing = None
        gevent.get_hub().cancel_waits_close_and_then(waits, ConnectionAbortedError, self._sock.close)


class TlsStream(OverASocket):
    """A TLS connection (gevent's SSLSocket) as a Stream. Its methods call the socket's at
    once (a bound method kept per connection instead would cost more memory than the call
    costs time: these are called once per batch of frames, not per frame)."""

    __slots__ = ("_sock",)

    transport = "tls"
    # A TLS socket cannot be asked for a single send or read that does not wait.
    without_waiting = False

    def __init__(self, sock: SSLSocket):
        self._sock = sock

    def receive(self) -> bytes:
        return self._sock.recv(RECV_SIZE)

    def receive_now(self) -> bytes:
        raise BlockingIOError()

    def send(self, data) -> int:
        return self._sock.send(data)

    def try_send(self, data) -> int:
        raise BlockingIOError()

    def buffered(self) -> bool:
        # TLS may have read application data along with the end of its handshake.
        return self._sock.pending() > 0

    def close(self, gracefully: bool = False) -> None:
        if gracefully:
            sockets.read_out(self._sock, self.receive)
        self._sock.close()
