"""A plain TCP connection's Stream (connection/streams.py's TcpStream), over a local socket
pair: its reads and sends that wait, and how another greenlet ends them (shut_down, close)
without leaving a wait behind to wake on a socket number used again."""

import socket

import gevent
import pytest
from gevent.event import Event

from chatroom.server.connection.streams import _WRITE, TcpStream
from chatroom.testing import WAIT, kernel_socket_pair


class _TellingWaits(TcpStream):
    """A TcpStream that says when a send begins to wait."""

    __slots__ = ("send_waits",)

    def __init__(self, sock):
        super().__init__(sock)
        self.send_waits = Event()

    def _wait_for(self, events: int) -> None:
        if events == _WRITE:
            self.send_waits.set()  # (seen once this greenlet has switched away, waiting)
        super()._wait_for(events)


@pytest.fixture
def stream_and_peer():
    """(a TcpStream over the server's end, the client's end); both closed at the end."""
    ours, theirs = kernel_socket_pair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield _TellingWaits(ours), theirs
    ours.close()
    theirs.close()


def send_until_it_waits(stream: _TellingWaits) -> gevent.Greenlet:
    """A greenlet sending until the peer's buffers are full, then waiting in a send; started
    and run to that wait."""
    chunk = b"x" * 65536

    def sending():
        while True:
            stream.send(chunk)

    sender = gevent.spawn(sending)
    assert stream.send_waits.wait(WAIT)
    assert stream._writing is not None  # (its wait: close() must wake it)
    return sender


def test_a_send_waits_for_room_and_all_of_it_arrives_as_the_peer_reads(stream_and_peer):
    stream, peer = stream_and_peer
    data = bytes(range(256)) * 4096  # 1 MiB: far more than the buffers take

    def send_all():
        view = memoryview(data)
        while view:
            view = view[stream.send(view) :]

    sender = gevent.spawn(send_all)
    received = bytearray()
    with gevent.Timeout(WAIT):
        while len(received) < len(data):
            received += peer.recv(65536)
    sender.get(timeout=WAIT)
    assert received == data


def test_a_receive_waits_for_bytes_and_then_for_the_end(stream_and_peer):
    stream, peer = stream_and_peer
    receiver = gevent.spawn(stream.receive)
    receiver.join(timeout=0.05)  # (nothing says when it is waiting: a bound, not an event)
    assert not receiver.ready()  # (nothing has come: it waits, and lets others run)
    peer.sendall(b"hello")
    assert receiver.get(timeout=WAIT) == b"hello"
    gevent.spawn_later(0.05, peer.close)
    with gevent.Timeout(WAIT):
        assert stream.receive() == b""


def test_shutting_down_from_another_greenlet_ends_a_waiting_receive_and_a_waiting_send(stream_and_peer):
    stream, _peer = stream_and_peer
    receiver = gevent.spawn(stream.receive)
    sender = send_until_it_waits(stream)
    stream.shut_down()
    assert receiver.get(timeout=WAIT) == b""
    with pytest.raises(OSError):
        sender.get(timeout=WAIT)


def test_closing_wakes_a_waiting_send_with_an_error_and_then_closes_the_socket(stream_and_peer):
    stream, peer = stream_and_peer
    sender = send_until_it_waits(stream)
    stream.close()
    with pytest.raises(ConnectionAbortedError):
        sender.get(timeout=WAIT)
    assert stream._writing is None
    with gevent.Timeout(WAIT):  # the peer reads what was sent, then the end
        while peer.recv(65536):
            pass
    with pytest.raises(OSError):
        stream.send(b"more")


def test_a_send_given_up_by_its_timeout_is_not_woken_by_a_later_close(stream_and_peer):
    stream, _peer = stream_and_peer
    went_on = Event()
    carry_on = Event()
    outcome = []

    def sending_within_a_time():
        with gevent.Timeout(0.05, False):
            while True:
                stream.send(b"x" * 65536)
        went_on.set()
        try:
            carry_on.wait(WAIT)  # (what the greenlet does next: no error may land in it)
            outcome.append("carried on")
        except BaseException as err:
            outcome.append(err)
            raise

    sender = gevent.spawn(sending_within_a_time)
    assert went_on.wait(WAIT)
    stream.close()
    sender.join(timeout=0.05)  # (an error wrongly thrown into it would end it meanwhile)
    carry_on.set()
    sender.join(timeout=WAIT)
    assert outcome == ["carried on"]
