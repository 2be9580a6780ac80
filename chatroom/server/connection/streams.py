"""What a Session needs of a connection, whatever carries it: TCP, TLS or a WebSocket.

:class:`Stream` is that contract; :class:`SocketStream` fulfils it for a TCP or TLS socket,
and :class:`~.web.WebSocketStream` for a browser's WebSocket. The session and its outbox deal
in frames and in these few methods, never in socket options.
"""

from typing import Protocol

from gevent.ssl import SSLSocket

from . import sockets

RECV_SIZE = 65536


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


class SocketStream:
    """A TCP or TLS socket as a Stream. Its methods call the socket's at once (a bound method
    kept per connection instead would cost more memory than the call costs time: these are
    called once per batch of frames, not per frame)."""

    __slots__ = ("_sock", "_raw", "transport", "without_waiting")

    def __init__(self, sock):
        self._sock = sock
        tls = isinstance(sock, SSLSocket)
        self.transport = "tls" if tls else "tcp"
        # A TLS socket cannot be asked for a single send or read that does not wait.
        self.without_waiting = not tls
        # gevent's socket wraps a non-blocking one, whose send is the single send that never
        # waits (BlockingIOError when the kernel takes nothing): what gevent's own send(data,
        # 0, 0.0) calls, without its Python layer.
        # (A TLS socket's is the TCP connection under the TLS: never to be written to.)
        self._raw = None if tls else sock._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def receive(self) -> bytes:
        return self._sock.recv(RECV_SIZE)

    def receive_now(self) -> bytes:
        if self._raw is None:
            raise BlockingIOError()
        return self._raw.recv(RECV_SIZE)

    def send(self, data) -> int:
        return self._sock.send(data)

    def try_send(self, data) -> int:
        if self._raw is None:
            raise BlockingIOError()
        return self._raw.send(data)

    def buffered(self) -> bool:
        # TLS may have read application data along with the end of its handshake.
        return self.transport == "tls" and self._sock.pending() > 0

    def unfinished_for(self) -> float | None:
        return None  # a frame begun is the session's decoder's to time

    def shut_down(self) -> None:
        sockets.shut_down(self._sock)

    def stop_reading(self) -> None:
        sockets.stop_reading(self._sock)

    def discard_unsent(self) -> None:
        sockets.discard_unsent(self._sock)

    def close(self, gracefully: bool = False) -> None:
        if gracefully:
            sockets.close_gracefully(self._sock)
        else:
            self._sock.close()
