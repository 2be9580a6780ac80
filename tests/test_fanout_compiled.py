"""A room's fan-out compiled in C (server/connection/_fanout.c) leaves every outbox, every
other sink and the hub's list of sends due as the Python loop it stands in for does."""

import gevent
import pytest
from gevent import socket

from chatroom.server.connection import outbox as outboxes
from chatroom.server.connection.outbox import DUE_ALONE, Outbox
from chatroom.server.connection.streams import SocketStream
from chatroom.testing import WAIT
from tests.test_outbox import _OutboxOfItsOwnKind, _Sink

needs_compiled = pytest.mark.skipif(outboxes.compiled is None, reason="built without a C compiler")


class _Devices:
    """A user's devices as the fan-out sees them (presence.devices.Devices): their sinks."""

    __slots__ = ("_sinks",)

    def __init__(self, sinks):
        self._sinks = sinks

    def offer(self, frame: bytes) -> bool:
        return outboxes.offer_each_in_python(self._sinks, frame) > 0


def fan_out_twice(offer_each) -> tuple:
    """A room's two frames offered to outboxes in every state and to other sinks: what each
    offer answered, which were due after each, every sink's state, and the stalls."""
    ours, theirs = socket.socketpair()
    stalls: list[str] = []

    def made(kind=Outbox, limit=1 << 20, name="") -> Outbox:
        return kind(SocketStream(ours), limit, WAIT, lambda: stalls.append(name))

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
            due.append([everything.index(outbox) for outbox in outboxes._due])
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
    registered = outboxes._devices_for_c
    outboxes.offer_devices_in_c(_Devices, vars(_Devices)["_sinks"])  # (the C loop reaches into these)
    try:
        compiled = fan_out_twice(outboxes.offer_each)
    finally:
        outboxes.offer_devices_in_c(*registered)
    in_python = fan_out_twice(outboxes.offer_each_in_python)
    assert compiled == in_python
    answers, due, _, stalls = compiled
    assert answers == [8, 7] and stalls == ["full", "phone"] and due[0] == [0, 2, 3, 11, 12]
