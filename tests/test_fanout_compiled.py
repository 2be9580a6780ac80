"""A room's fan-out compiled in C (server/connection/_fanout.c) leaves every outbox, every
other sink and the hub's list of sends due as the Python loop it stands in for does."""

import gevent
import pytest
from gevent import socket
from gevent.event import Event

from chatroom.server.connection import fanout
from chatroom.server.connection import outbox as outboxes
from chatroom.server.connection.outbox import DUE_ALONE, Outbox
from chatroom.server.connection.streams import TcpStream
from chatroom.server.operations.counts import COUNTS
from chatroom.testing import WAIT, kernel_socket_pair
from tests.test_outbox import _OutboxOfItsOwnKind, _Sink
from tests.test_quiet import _WaitingItself

needs_compiled = pytest.mark.skipif(outboxes.compiled is None, reason="built without a C compiler")


class _Devices:
    """A user's devices as the fan-out sees them (presence.devices.Devices): their sinks."""

    __slots__ = ("_sinks",)

    def __init__(self, sinks):
        self._sinks = sinks

    def offer(self, frame: bytes) -> bool:
        return fanout.offer_each_in_python(self._sinks, frame) > 0


def fan_out_twice(offer_each) -> tuple:
    """A room's two frames offered to outboxes in every state and to other sinks: what each
    offer answered, which were due after each, every sink's state, and the stalls."""
    ours, theirs = kernel_socket_pair()
    stalls: list[str] = []

    def made(kind=Outbox, limit=1 << 20, name="") -> Outbox:
        return kind(TcpStream(ours), limit, WAIT, lambda: stalls.append(name))

    fresh, own_kind, full, closed, alone, writing = (
        made(),
        made(_OutboxOfItsOwnKind),
        made(limit=3, name="full"),
        made(),
        made(),
        made(),
    )
    closed.close()
    alone.queue_for_hub(b"x")  # (its send due by a callback of its own)
    assert alone._scheduled == DUE_ALONE
    writing._writer = gevent.getcurrent()  # (a send under way: the frame waits in its queue)
    taking, refusing = _Sink(True), _Sink(False)
    phone, laptop = made(limit=3, name="phone"), made()
    devices, none_open = _Devices([phone, laptop]), _Devices([closed])
    sinks = [fresh, taking, own_kind, full, closed, alone, refusing, writing, fresh, devices, none_open]
    everything = [*sinks, phone, laptop]
    answers, due = [], []
    try:
        for frame in (b"room", b"more"):
            answers.append(offer_each(sinks, frame))
            due.append([everything.index(outbox) for outbox in fanout._due])
        states = [
            (o._frames, o._queued, o._scheduled, o.closed) if isinstance(o, Outbox) else getattr(o, "offered", None)
            for o in everything
        ]
        writing._writer = None
        return answers, due, states, stalls
    finally:
        gevent.sleep(0)  # (the hub sends what was made due)
        ours.close()
        theirs.close()


@needs_compiled
def test_the_compiled_fan_out_leaves_every_sink_as_the_python_one_does():
    registered = fanout._devices_for_c
    fanout.offer_devices_in_c(_Devices, vars(_Devices)["_sinks"])  # (the C loop reaches into these)
    try:
        compiled = fan_out_twice(fanout.offer_each)
    finally:
        fanout.offer_devices_in_c(*registered)
    in_python = fan_out_twice(fanout.offer_each_in_python)
    assert compiled == in_python
    answers, due, _, stalls = compiled
    assert answers == [8, 7] and stalls == ["full", "phone"] and due[0] == [0, 2, 3, 11, 12]


class _Shouting(Outbox):
    """An outbox that writes what it takes its own way (as the IRC port's writes lines)."""

    __slots__ = ()

    def _take_frames(self):
        frames, self._frames = self._frames, None
        return b"".join(frames).upper()


def send_in_every_state(send_queued) -> tuple:
    """The hub's send (send_queued) of outboxes in every state: each one's state after it,
    the bytes counted as sent, and what each peer had received before anyone else ran."""
    pairs = [kernel_socket_pair() for _ in range(10)]
    counted = COUNTS.bytes_out
    stalls: list[int] = []

    def made(index, kind=Outbox, limit=1 << 20) -> Outbox:
        return kind(TcpStream(pairs[index][0]), limit, WAIT, lambda: stalls.append(index))

    one, three, empty, closed, writing, left_part_way, full, shouting, broken, cannot_try = (
        made(0),
        made(1, limit=100),
        made(2),
        made(3),
        made(4),
        made(5),
        made(6),
        made(7, _Shouting),
        made(8),
        made(9),
    )
    outboxes_ = [one, three, empty, closed, writing, left_part_way, full, shouting, broken, cannot_try]
    one.queue_to_flush(b"one")
    for frame in (b"a" * 60, b"b" * 60, b"c"):  # (over its limit until sent: a producer waits)
        three.queue_to_flush(frame)
    three._room = Event()
    closed.queue_to_flush(b"x")
    closed.close()
    writing.queue_to_flush(b"x")
    writing._writer = gevent.getcurrent()
    left_part_way.queue_to_flush(b"later")
    left_part_way._in_flight, left_part_way._in_flight_sent = b"\x83\x00\x02ab", 1
    pairs[6][0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    full.queue_to_flush(b"f" * (4 << 20))  # (more than the socket takes at once)
    shouting.queue_to_flush(b"quiet")
    broken.queue_to_flush(b"x")
    pairs[8][0].shutdown(socket.SHUT_WR)  # (a send fails at once)
    cannot_try.queue_to_flush(b"x")
    cannot_try._can_try_send = False
    for outbox in outboxes_:
        outbox._scheduled = DUE_ALONE
    try:
        for outbox in outboxes_:
            send_queued(outbox)
        states = [
            (
                o._frames,
                o._queued,
                o._scheduled,
                o.closed,
                o._in_flight is not None and len(o._in_flight),
                o._in_flight_sent,
                o._writer is None,
                o._room is not None and o._room.is_set(),
            )
            for o in outboxes_
        ]
        received = []
        for _, theirs in pairs:
            theirs.setblocking(False)
            try:
                received.append(len(theirs.recv(1 << 16)) if theirs is pairs[6][1] else theirs.recv(1 << 16))
            except BlockingIOError:
                received.append(None)
        return states, COUNTS.bytes_out - counted, received, stalls
    finally:
        writing._writer = None
        for outbox in outboxes_:
            outbox.close()
        gevent.sleep(0)  # (the writers spawned find their outboxes closed)
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


@needs_compiled
def test_the_compiled_send_leaves_every_outbox_as_the_python_one_does():
    compiled = send_in_every_state(outboxes.compiled.send_queued)
    in_python = send_in_every_state(Outbox._send_queued_for_hub)
    states, _, received, stalls = compiled
    assert received[:2] == [b"one", b"a" * 60 + b"b" * 60 + b"c"] and received[7] == b"QUIET"
    assert states[1][-1] is True  # (the producer waiting for room is woken)
    assert states[3][3] and states[8][3]  # (closed before, and closed by its failed send)
    assert 0 < states[6][5] < (4 << 20) and not states[6][6]  # (part sent, a writer left the rest)
    assert not stalls
    # (Counted as sent: what each socket took, the full one's part being its own.)
    assert compiled[1] - states[6][5] == in_python[1] - in_python[0][6][5] == len(b"one") + 121 + len(b"QUIET")
    assert [s[:5] + s[6:] for s in compiled[0]] == [s[:5] + s[6:] for s in in_python[0]]
    assert compiled[2][:6] == in_python[2][:6] and compiled[2][7:] == in_python[2][7:]


def send_on_a_stream_that_cannot_be_tried(send_queued) -> tuple:
    """An outbox on a stream that cannot send without waiting (as a TLS one): nothing is
    tried, a writer sends it all."""
    ours, theirs = kernel_socket_pair()
    outbox = Outbox(_WaitingItself(ours), 1 << 20, WAIT, lambda: None)
    try:
        outbox.queue_to_flush(b"through the writer")
        send_queued(outbox)
        tried = (outbox._in_flight, outbox._in_flight_sent, outbox._writer is not None)
        outbox.finish(WAIT)
        theirs.settimeout(WAIT)
        return tried, theirs.recv(1 << 16), outbox.queued_bytes
    finally:
        outbox.close()
        ours.close()
        theirs.close()


@needs_compiled
def test_a_stream_that_cannot_be_tried_is_left_to_a_writer_in_c_as_in_python():
    compiled = send_on_a_stream_that_cannot_be_tried(outboxes.compiled.send_queued)
    assert compiled == send_on_a_stream_that_cannot_be_tried(Outbox._send_queued_for_hub)
    assert compiled == ((b"through the writer", 0, True), b"through the writer", 0)
