"""A connection's outgoing queue: frames leave whole, in order, coalesced into few sends.

Many greenlets put frames for one client at once (its own replies, messages from any
sender). An Outbox lets one of them at a time write to the socket, and everything queued
while a send is under way leaves together in the next one.

The queue is bounded. A producer that finds it full waits for room; a client that takes
nothing from its socket for ``stall_timeout`` seconds, while data waits for it, is stalled:
the outbox closes and calls ``on_stall`` once.
"""

import socket

import gevent
from gevent import socket as gevent_socket
from gevent.event import Event


class _Stalled(Exception):
    pass


class Outbox:
    def __init__(self, sock, limit: int, stall_timeout: float, on_stall):
        self._sock = sock
        self._limit = limit
        self._stall_timeout = stall_timeout
        self._on_stall = on_stall
        self._frames = []
        self._queued = 0  # bytes queued or being sent
        self._writer = None  # the greenlet writing right now, if any
        self._room = Event()
        self._room.set()
        self.closed = False

    def put(self, data: bytes) -> None:
        """Queue data; it goes out at the next flush (of this greenlet or another)."""
        if self.closed:
            return
        self._frames.append(data)
        self._queued += len(data)

    def push(self, data: bytes) -> None:
        """Queue data and have it sent without the caller waiting on this socket."""
        self.put(data)
        if self._writer is None and not self.closed:
            self._writer = gevent.spawn(self._write_all)

    def flush(self) -> None:
        """Send what is queued from this greenlet, unless another is already at it."""
        if self._writer is None and self._frames:
            self._writer = gevent.getcurrent()
            self._write_all()

    def has_room(self) -> bool:
        return self._queued < self._limit

    def wait_for_room(self) -> bool:
        """Wait until the queue is under its limit; False if closed, or stalled meanwhile."""
        with gevent.Timeout(self._stall_timeout, False):
            while not self.closed and self._queued >= self._limit:
                self._room.clear()
                self._room.wait()
            return not self.closed
        self._stalled()
        return False

    def finish(self, timeout: float) -> None:
        """Give what is queued up to timeout seconds to leave, before the socket closes."""
        with gevent.Timeout(timeout, False):
            writer = self._writer
            if writer is not None and writer is not gevent.getcurrent():
                writer.join()
            self.flush()

    def close(self) -> None:
        """Drop what is queued and refuse more; wakes producers waiting for room."""
        self.closed = True
        self._frames = []
        self._room.set()

    def _stalled(self):
        if not self.closed:
            self.close()
            self._on_stall()

    def _write_all(self):
        try:
            while self._frames and not self.closed:
                frames, self._frames = self._frames, []
                self._send_all(frames[0] if len(frames) == 1 else b"".join(frames))
        except _Stalled:
            self._stalled()
        except OSError:
            self.close()
            shut_down(self._sock)
        finally:
            self._writer = None

    def _send_all(self, data):
        view = memoryview(data)
        while view:
            # A timeout per send: a slow client making progress is not stalled.
            with gevent.Timeout(self._stall_timeout, _Stalled):
                sent = self._sock.send(view)
            view = view[sent:]
            self._queued -= sent
            if self._queued < self._limit:
                self._room.set()


def shut_down(sock):
    """End a connection from any greenlet: its reader wakes to an end of stream.

    For a TLS socket this shuts down the TCP connection under it, leaving the TLS object in
    place for the reader, which then sees an ordinary end of stream.
    """
    try:
        gevent_socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
