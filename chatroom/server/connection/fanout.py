"""A room's message handed to many outboxes at once, never waiting on one of them.

Each outbox takes it while under its limit; one whose queue is full has stalled, and is
closed (a slow member never holds up the room). The sends it makes due go in one callback of
the hub for all of them, where the room's other senders add to them meanwhile.
"""

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import gevent

from ..operations.counts import COUNTS
from .outbox import DUE_WITH_A_ROOM, Outbox, compiled, send_queued

if TYPE_CHECKING:
    from ..presence.directory import RoomSink

log = logging.getLogger(__name__)


def offer_each(sinks: "Iterable[RoomSink]", data: bytes) -> int:
    """A room's message handed to its members' sinks, never waiting: how many took it.

    An outbox queues it while under its limit (a full one has stalled: closed, what it held of
    relayed messages in its ``dropped``, its on_stall called), and its send is due in one
    callback for all of them (see _due); other sinks (a user's devices) are offered it. An
    outbox's part is written out here instead of called: per member, the call was most of
    what a room's message cost. (The same loop in C, where it was built: _fanout.c.)"""
    if compiled is not None:
        return compiled.offer_each(sinks, data, _due, _schedule_due, _stalled_in_a_room, *_devices_for_c)
    return offer_each_in_python(sinks, data)


def offer_each_in_python(sinks: "Iterable[RoomSink]", data: bytes) -> int:
    """offer_each's loop, where _fanout.c was not built (and for the test that compares them)."""
    taken = 0
    size = len(data)
    for sink in sinks:
        if not isinstance(sink, Outbox):
            taken += sink.offer(data)
        elif sink._queued < sink._limit:
            if sink.closed:
                continue
            frames = sink._frames  # (queue_to_flush's, without its call: 70 ns a member more)
            if frames is None:
                sink._frames = [data]
            else:
                frames.append(data)
            sink._queued += size
            if sink._writer is None and not sink._scheduled:
                sink._scheduled = DUE_WITH_A_ROOM
                if not _due:
                    sink._loop.run_callback(_send_due)
                _due.append(sink)
            taken += 1
        elif not sink.closed:
            _stalled_in_a_room(sink)
    return taken


# The outboxes a room's message made due to send at the hub's next round of callbacks: one
# callback for all of them, not one each (a callback of the loop's own, with its bound method,
# costs twice what a place in this list does). A relayed message keeps a callback of its own:
# there the send waits for the sessions resumed before it, and takes more of their frames.
_due: list[Outbox] = []


# A user's devices (presence.devices.Devices, which imports this module, says so: see
# offer_devices_in_c): their type and the slot of their sinks, which the C loop offers a room's
# frame to itself. (Until then, no sink is of the type given.)
_devices_for_c: tuple = (type(None), vars(Outbox)["_frames"])


def offer_devices_in_c(devices_type: type, sinks_slot) -> None:
    """The C loop offers a room's frame to these devices' sinks itself (see _fanout.c): their
    offer() must be offer_each(their sinks) > 0, as Devices' is."""
    global _devices_for_c
    _devices_for_c = (devices_type, sinks_slot)


def _schedule_due() -> None:
    gevent.get_hub().loop.run_callback(_send_due)


def _stalled_in_a_room(outbox: Outbox) -> None:
    COUNTS.room_stalls += 1
    outbox._stalled()


def _send_due() -> None:
    global _due
    due, _due = _due, []  # (one made due meanwhile goes in the next round's)
    for outbox in due:
        try:
            send_queued(outbox)
        except Exception:  # (a bug: it must not leave the others' sends undone)
            log.exception("a send to a client failed; closing its connection")
            outbox._fail()
