"""A session's wait for its client's next bytes (connection/quiet.py), over a local socket
pair: bytes as they come, the end of the stream, and None once the client is quiet too long,
on a plain socket (which waits for readability) and on a stream that must wait itself."""

import gevent
import pytest

from chatroom.server.connection.quiet import QuietWait
from chatroom.server.connection.streams import TcpStream
from chatroom.testing import WAIT, kernel_socket_pair


class _WaitingItself(TcpStream):
    """A stream that cannot be read or sent on without waiting, as a TLS socket or a
    WebSocket."""

    without_waiting = False


@pytest.fixture(params=[TcpStream, _WaitingItself], ids=["plain", "waiting-itself"])
def stream_and_peer(request):
    ours, theirs = kernel_socket_pair()
    yield request.param(ours), theirs
    ours.close()
    theirs.close()


def waiting(stream, seconds: float) -> QuietWait:
    return QuietWait(stream, seconds, gevent.get_hub().loop.io(stream.fileno(), 1))


def test_bytes_that_come_while_waiting_are_received(stream_and_peer):
    stream, peer = stream_and_peer
    wait = waiting(stream, WAIT)
    gevent.spawn_later(0.05, peer.sendall, b"hello")
    with gevent.Timeout(WAIT):
        assert wait.receive() == b"hello"
    peer.sendall(b"again")  # (the same wait, again: one for every wait of a wake)
    with gevent.Timeout(WAIT):
        assert wait.receive() == b"again"


def test_the_end_of_the_stream_is_empty_bytes(stream_and_peer):
    stream, peer = stream_and_peer
    gevent.spawn_later(0.05, peer.close)
    with gevent.Timeout(WAIT):
        assert waiting(stream, WAIT).receive() == b""


def test_nothing_within_the_time_is_none_and_what_comes_later_is_not_lost(stream_and_peer):
    stream, peer = stream_and_peer
    wait = waiting(stream, 0.05)
    with gevent.Timeout(WAIT):
        assert wait.receive() is None
    peer.sendall(b"late")
    with gevent.Timeout(WAIT):
        assert wait.receive() == b"late"


def test_every_wait_has_the_whole_quiet_time(stream_and_peer):
    """Waits that together last longer than the quiet time each still get all of it (a
    restarted timer kept only what was left of it, so a busy client parked for nothing)."""
    stream, peer = stream_and_peer
    wait = waiting(stream, 0.3)
    for _ in range(4):  # 0.48 s of waiting in all
        gevent.spawn_later(0.12, peer.sendall, b"x")
        with gevent.Timeout(WAIT):
            assert wait.receive() == b"x"
