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
    sinks = [fresh, taking, own_kind, full, closed, alone, refusing, writing, fresh]
    answers, due = [], []
    try:
        for frame in (b"room", b"more"):
            answers.append(offer_each(sinks, frame))
            due.append([sinks.index(outbox) for outbox in outboxes._due])
        states = [(o._frames, o._queued, o._scheduled, o.closed) if isinstance(o, Outbox) else o.offered for o in sinks]
        writing._writer = None
        return answers, due, states, stalls
    finally:
        gevent.sleep(0)  # (the hub sends what was made due)
        ours.close()
        theirs.close()


@needs_compiled
def test_the_compiled_fan_out_leaves_every_sink_as_the_python_one_does():
    compiled = fan_out_twice(outboxes.offer_each)
    in_python = fan_out_twice(outboxes.offer_each_in_python)
    assert compiled == in_python
    answers, due, _, stalls = compiled
    assert answers == [7, 6] and stalls == ["full"] and due[0] == [0, 2, 3]
