"""The outbox on its own, over a local socket pair: order, coalescing, bounds, stalls; the
socket stream it sends on; and a session's replies joining the send a room's message made due."""

from types import SimpleNamespace

import gevent
import pytest
from gevent import socket
from gevent.event import AsyncResult, Event

from chatroom.codec import Decoder, encode, room_message_frame
from chatroom.protocol import Incoming, ListUsers, Response, SendTo, Status, UserList
from chatroom.server.connection.fanout import offer_each
from chatroom.server.connection.limits import Limits
from chatroom.server.connection.outbox import Outbox
from chatroom.server.connection.session import Session
from chatroom.server.connection.streams import TcpStream
from chatroom.server.pending import Pending
from chatroom.server.presence.directory import LocalDirectory
from chatroom.testing import WAIT, kernel_socket_pair


@pytest.fixture
def pair():
    """(server side, client side) of a connected local socket pair; both closed at the end."""
    ours, theirs = kernel_socket_pair()
    yield ours, theirs
    ours.close()
    theirs.close()


def read_exactly(sock, n: int) -> bytes:
    data = b""
    with gevent.Timeout(WAIT):
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "closed early"
            data += chunk
    return data


def test_flush_sends_queued_frames_whole_and_in_order(pair):
    ours, theirs = pair
    outbox = Outbox(TcpStream(ours), limit=1 << 20, stall_timeout=WAIT, on_stall=lambda: None)
    for i in range(100):
        outbox.queue_to_flush(f"frame {i:03d};".encode())
    outbox.flush()
    expected = b"".join(f"frame {i:03d};".encode() for i in range(100))
    assert read_exactly(theirs, len(expected)) == expected


def test_frames_queued_for_the_hub_in_one_round_leave_together(pair):
    ours, theirs = pair
    outbox = Outbox(TcpStream(ours), limit=1 << 20, stall_timeout=WAIT, on_stall=lambda: None)
    for i in range(10):
        outbox.queue_for_hub(bytes([i]) * 10)
    # Nothing is sent until the caller yields: then one send carries all ten.
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(1000)
    gevent.sleep(0)
    theirs.setblocking(True)
    assert read_exactly(theirs, 100) == b"".join(bytes([i]) * 10 for i in range(10))


class _BrokenStream(TcpStream):
    def try_send(self, data):
        raise RuntimeError("a bug in the stream")


def test_a_rooms_frames_offered_to_many_leave_in_one_round_whatever_one_send_does(caplog):
    pairs = [kernel_socket_pair() for _ in range(3)]
    try:
        streams = [TcpStream(pairs[0][0]), _BrokenStream(pairs[1][0]), TcpStream(pairs[2][0])]
        outboxes = [Outbox(stream, 1 << 20, WAIT, lambda: None) for stream in streams]
        for number in range(3):
            for outbox in outboxes:
                assert offer_each((outbox,), bytes([number]) * 10) == 1
        for _ours, theirs in pairs:
            theirs.setblocking(False)
            with pytest.raises(BlockingIOError):  # nothing until the caller yields
                theirs.recv(1000)
            theirs.setblocking(True)
        gevent.sleep(0)
        expected = b"".join(bytes([number]) * 10 for number in range(3))
        for _ours, theirs in pairs[0], pairs[2]:
            theirs.setblocking(False)  # (all there after one round: not read_exactly's wait)
            assert theirs.recv(1000) == expected
        assert outboxes[1].closed and "a send to a client failed" in caplog.text
        assert "RuntimeError: a bug in the stream" in caplog.text  # (what failed, with its traceback)
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


class _Sink:
    """A sink that is not an outbox (as a user's devices are): it is offered the frame."""

    def __init__(self, takes: bool):
        self.takes, self.offered = takes, []

    def offer(self, frame: bytes) -> bool:
        self.offered.append(frame)
        return self.takes


class _OutboxOfItsOwnKind(Outbox):  # (as the IRC port's is)
    __slots__ = ()


def test_a_rooms_frame_offered_to_each_sink_is_counted_where_taken(pair):
    ours, theirs = pair
    stalls = []
    sending = _OutboxOfItsOwnKind(TcpStream(ours), 1 << 20, WAIT, lambda: stalls.append("sending"))
    full = Outbox(TcpStream(ours), 4, WAIT, lambda: stalls.append("full"))
    closed = Outbox(TcpStream(ours), 1 << 20, WAIT, lambda: stalls.append("closed"))
    closed.close()
    taking, refusing = _Sink(True), _Sink(False)
    assert offer_each((full,), b"12345") == 1  # (under its limit when offered: queued, and now over it)
    sinks = [sending, taking, full, closed, refusing]
    assert offer_each(sinks, b"room") == 2  # the sending outbox and the taking sink
    assert taking.offered == refusing.offered == [b"room"]
    assert stalls == ["full"] and full.closed  # over its limit: stalled, once
    assert offer_each(sinks, b"more") == 2 and stalls == ["full"]
    gevent.sleep(0)  # (sent at the hub's next round)
    assert read_exactly(theirs, 8) == b"roommore"


def test_a_producer_waits_for_room_and_resumes_when_the_reader_drains(pair):
    ours, theirs = pair
    outbox = Outbox(TcpStream(ours), limit=64 * 1024, stall_timeout=WAIT, on_stall=lambda: None)
    chunk = b"x" * 32 * 1024
    sent = 0
    while outbox.has_room():  # fill the kernel buffers and then the queue
        outbox.queue_for_hub(chunk)
        sent += len(chunk)
        gevent.sleep(0)
    waiter = gevent.spawn(outbox.wait_for_room)
    gevent.sleep(0.05)
    assert not waiter.ready()
    read_exactly(theirs, sent)
    assert waiter.get(timeout=WAIT) is True


def test_a_reader_that_takes_nothing_is_stalled_once(pair):
    ours, _theirs = pair
    stalls = []
    outbox = Outbox(TcpStream(ours), limit=64 * 1024, stall_timeout=0.2, on_stall=lambda: stalls.append(1))
    while outbox.has_room():
        outbox.queue_for_hub(b"y" * 32 * 1024)
        gevent.sleep(0)
    assert outbox.wait_for_room() is False
    assert outbox.wait_for_room() is False
    assert stalls == [1] and outbox.closed


def test_a_rooms_frame_is_refused_by_a_full_queue_which_stalls_with_what_it_held(pair):
    ours, _ = pair
    relayed = encode(Incoming("alice", "kept for later"))
    stalls = []
    outbox = Outbox(TcpStream(ours), limit=len(relayed), stall_timeout=WAIT, on_stall=lambda: stalls.append(1))
    assert offer_each((outbox,), relayed) == 1  # (under the limit: queued)
    assert offer_each((outbox,), b"a room's frame") == 0
    # Closed first, so that the session's stall hook finds the relayed message to keep.
    assert stalls == [1] and outbox.closed and list(outbox.dropped) == [relayed]
    assert offer_each((outbox,), b"another") == 0 and stalls == [1]  # (stalled once)


def test_close_drops_the_queue_and_wakes_waiting_producers(pair):
    ours, _theirs = pair
    stream = TcpStream(ours)
    outbox = Outbox(stream, limit=64 * 1024, stall_timeout=WAIT, on_stall=lambda: None)
    while outbox.has_room():
        outbox.queue_for_hub(b"z" * 32 * 1024)
        gevent.sleep(0)
    waiter = gevent.spawn(outbox.wait_for_room)
    gevent.sleep(0.05)
    outbox.close()
    assert waiter.get(timeout=WAIT) is False
    outbox.queue_to_flush(b"after close")
    outbox.flush()  # nothing queued, nothing sent, no error
    stream.close()  # (as a session ends: its writer, still waiting to send, woken first)


def test_a_peer_that_vanished_closes_the_outbox_without_raising(pair):
    ours, theirs = pair
    outbox = Outbox(TcpStream(ours), limit=1 << 20, stall_timeout=WAIT, on_stall=lambda: None)
    theirs.close()
    for _ in range(3):
        outbox.queue_to_flush(b"q" * 300_000)
        outbox.flush()
    assert outbox.closed


def test_closing_keeps_every_relayed_message_not_sent_whole(pair):
    ours, theirs = pair
    stream = TcpStream(ours)
    outbox = Outbox(stream, limit=64 << 20, stall_timeout=WAIT, on_stall=lambda: None)
    frames = [encode(Incoming("alice", f"{i} " + "x" * 200_000)) for i in range(8)]
    for frame in frames:
        outbox.queue_to_flush(frame)
    writer = gevent.spawn(outbox.flush)  # blocks: nobody reads the other end yet
    gevent.sleep(0.1)
    outbox.close()
    writer.kill()
    ours.shutdown(socket.SHUT_WR)
    received = b""
    with gevent.Timeout(WAIT):
        while data := theirs.recv(1 << 20):
            received += data
    whole = len(Decoder.for_client().receive_data(received))
    assert 0 < len(outbox.dropped) < len(frames)
    assert outbox.dropped == frames[whole:]  # the one cut short among them
    stream.close()  # (as a session ends: its writer, still waiting to send, woken first)


def test_the_stream_reads_what_has_arrived_without_waiting(pair):
    ours, theirs = pair
    stream = TcpStream(ours)
    with pytest.raises(BlockingIOError):
        stream.receive_now()  # (nothing yet: the session waits, with its parking timer)
    theirs.sendall(b"abc")
    socket.wait_read(ours.fileno(), timeout=WAIT)
    assert stream.receive_now() == b"abc"
    theirs.close()
    assert stream.receive_now() == b""  # the end


class _CountingStream(TcpStream):
    def __init__(self, sock):
        super().__init__(sock)
        self.sends: list[bytes] = []

    def try_send(self, data):
        self.sends.append(bytes(data))
        return super().try_send(data)


def test_a_batchs_replies_leave_in_the_send_a_rooms_message_made_due(pair):
    ours, theirs = pair
    stream = _CountingStream(ours)
    session = Session(stream, "127.0.0.1:40000", LocalDirectory(), Limits(), on_end=lambda session: None)
    first, second = (room_message_frame("#r", "alice", n, 0, b"hi") for n in (1, 2))
    assert offer_each([session.room_sink()], first) == 1
    assert session._serve_batch(encode(ListUsers()))
    assert stream.sends == []  # (due at the hub's next round: the reply waits for it)
    assert offer_each([session.room_sink()], second) == 1  # (another sender, served meanwhile)
    gevent.sleep(0)
    reply = encode(UserList(()))
    assert stream.sends == [first + reply + second]
    # Without a room's message due, the reply goes at once.
    assert session._serve_batch(encode(ListUsers())) and stream.sends[1:] == [reply]
    assert read_exactly(theirs, len(first + reply + second + reply)) == first + reply + second + reply


def test_what_a_timed_out_finish_left_half_sent_leaves_before_anything_queued_after_it(pair):
    """(A login's stored messages are handed out with finish(): its time can run out in the
    middle of a send. What is queued for the hub afterwards must not jump ahead of the rest.)"""
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    outbox = Outbox(TcpStream(ours), limit=1 << 24, stall_timeout=WAIT, on_stall=lambda: None)
    first = b"a" * (1 << 20)  # (far more than the socket's buffers take)
    outbox.queue_to_flush(first)
    outbox.finish(0.05)  # the peer reads nothing meanwhile: it stops part way
    assert outbox.queued_bytes > 0 and not outbox.closed
    outbox.queue_for_hub(b"b" * 10)
    gevent.sleep(0)  # (the hub's send of what was queued after it)
    reader = gevent.spawn(read_exactly, theirs, len(first) + 10)
    outbox.finish(WAIT)
    assert reader.get(timeout=WAIT) == first + b"b" * 10


def test_a_batchs_replies_the_socket_cannot_take_at_once_follow_in_order_while_the_session_reads_on(pair):
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    directory = LocalDirectory()
    for n in range(1000):  # (each LIST answered with 1000 names: about 8 KB a reply)
        assert directory.claim(f"user{n:04}", _Sink(True))
    session = Session(TcpStream(ours), "127.0.0.1:40000", directory, Limits(), on_end=lambda session: None)
    reply = encode(UserList(tuple(directory.names())))
    with gevent.Timeout(WAIT):  # (the session does not wait for its client to read)
        assert session._serve_batch(encode(ListUsers()) * 20)
        assert session._outbox._writer is not None  # (the rest of the replies: a writer's)
        assert session._serve_batch(encode(ListUsers()) * 20)  # (queued behind them)
    assert read_exactly(theirs, 40 * len(reply)) == reply * 40


def test_what_others_queue_during_a_hold_follows_the_replies_queued_in_it(pair):
    ours, theirs = pair
    outbox = Outbox(TcpStream(ours), limit=1 << 20, stall_timeout=WAIT, on_stall=lambda: None)
    outbox.queue_for_hub(b"before;")
    outbox.hold()
    outbox.queue_for_hub(b"event;")  # (another greenlet's push while the reply is built)
    assert offer_each((outbox,), b"room;") == 1
    outbox.queue_to_flush(b"reply 1;")
    outbox.flush()
    gevent.sleep(0)
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing leaves during a hold
        theirs.recv(1000)
    theirs.setblocking(True)
    outbox.queue_to_flush(b"reply 2;")
    outbox.release()
    outbox.queue_for_hub(b"after;")
    expected = b"before;reply 1;reply 2;event;room;after;"
    assert read_exactly(theirs, len(expected)) == expected  # (sent at the hub's next round)


def test_a_hold_waits_for_the_writer_at_work_and_finish_waits_for_the_hold(pair):
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    outbox = Outbox(TcpStream(ours), limit=1 << 24, stall_timeout=WAIT, on_stall=lambda: None)
    big = b"a" * (1 << 20)  # (more than the socket takes: a writer greenlet sends the rest)
    outbox.queue_for_hub(big)
    gevent.sleep(0)
    outbox.hold()
    outbox.queue_for_hub(b"event;")
    outbox.queue_to_flush(b"reply;")
    finished = gevent.spawn(outbox.finish, 60)  # (its own time far beyond the test's waits)
    assert read_exactly(theirs, len(big)) == big  # (the writer's frames go on)
    finished.join(0.05)
    assert not finished.dead  # (the rest waits for the hold's end)
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(1000)
    theirs.setblocking(True)
    outbox.release()
    assert read_exactly(theirs, len(b"reply;event;")) == b"reply;event;"
    finished.join(WAIT)
    assert finished.dead


def test_closing_ends_a_hold(pair):
    ours, _ = pair
    outbox = Outbox(TcpStream(ours), limit=1 << 20, stall_timeout=WAIT, on_stall=lambda: None)
    outbox.hold()
    outbox.queue_for_hub(b"event;")
    outbox.close()
    with gevent.Timeout(WAIT):
        outbox.finish(60)  # (returns at once: nobody is left to end the hold)
    outbox.release()  # (its owner's release, after the close, is no error)
    outbox.hold()  # (nor is a hold of a closed outbox)
    outbox.release()


def test_a_reply_held_behind_a_message_on_its_way_to_another_node_still_ends_its_hold(pair):
    """(A cluster's SENDTO to another node's user: its reply, and those after it, wait for that
    node.) A reply made from a snapshot among them goes before what was pushed meanwhile, and
    once it is queued the pushes go."""
    ours, theirs = pair
    delivered, held = AsyncResult(), Event()
    on_its_way = Pending(SimpleNamespace(_delivered=lambda *args: None), "ann", "bob", "hi", delivered, 1, 0, None)

    class WaitingSession(Session):
        def _relayer(self):
            return None

        def _answerer(self):
            return self._answer_in_turn

        def _answer_in_turn(self, event):
            if type(event) is SendTo:
                return on_its_way
            self.hold_pushes()
            held.set()
            return encode(UserList(("snapshot",)))

    session = WaitingSession(TcpStream(ours), "127.0.0.1:40000", LocalDirectory(), Limits(), on_end=lambda s: None)
    session.start()
    theirs.sendall(encode(SendTo("bob", "hi")) + encode(ListUsers()))
    assert held.wait(WAIT)  # (both answered: the session waits for the other node)
    pushed = encode(Incoming("cy", "meanwhile"))
    assert session.deliver(pushed)
    delivered.set(True)
    expected = encode(Response(Status.OK)) + encode(UserList(("snapshot",))) + pushed
    assert read_exactly(theirs, len(expected)) == expected
