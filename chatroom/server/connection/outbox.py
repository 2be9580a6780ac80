"""A connection's outgoing queue: frames leave whole, in order, coalesced into few sends.

Many greenlets put frames for one client at once (its own replies, messages from any
sender). An Outbox lets one of them at a time write to the socket, and everything queued
while a send is under way leaves together in the next one.

The queue is bounded. A producer that finds it full waits for room; a client that takes
nothing from its socket for ``stall_timeout`` seconds, while data waits for it, is stalled:
the outbox closes and calls ``on_stall`` once.
"""

from collections.abc import Sequence

import gevent
from gevent.event import Event

from ...codec import frame_end, split_frames
from ...protocol import INCOMING
from ..operations.counts import COUNTS
from .streams import Stream, TcpStream

try:
    from . import _fanout as compiled  # (built from _fanout.c where the install found a compiler)
except ImportError:
    compiled = None  # type: ignore[assignment]


class _Stalled(Exception):
    pass


# How an outbox's send is due at the hub's next round of callbacks: not, by a callback of its
# own (queue_for_hub), or in the one callback of a room's fan-out (fanout.offer_each).
NOT_DUE, DUE_ALONE, DUE_WITH_A_ROOM = 0, 1, 2


class Outbox:
    __slots__ = (
        "_stream",
        "_limit",
        "_stall_timeout",
        "_on_stall",
        "_frames",
        "_queued",
        "_writer",
        "_scheduled",
        "_loop",
        "_can_try_send",
        "_room",
        "_in_flight",
        "_in_flight_sent",
        "_hold",
        "closed",
        "dropped",
    )

    def __init__(self, stream: Stream, limit: int, stall_timeout: float, on_stall):
        self._stream = stream
        self._limit = limit
        self._stall_timeout = stall_timeout
        self._on_stall = on_stall
        self._frames: list | None = None  # queued, not yet sent (a list only while there are some)
        self._queued = 0  # bytes queued or being sent
        self._writer: gevent.Greenlet | _Hold | None = None  # the greenlet writing right now, if any (or a hold)
        self._scheduled = NOT_DUE  # or how a send is due at the hub's next round of callbacks
        self._loop = gevent.get_hub().loop
        self._can_try_send = stream.without_waiting
        self._room: Event | None = None  # an Event, made when a producer first has to wait for room
        self._in_flight: bytes | None = None  # frames being sent (from a frame's start)...
        self._in_flight_sent = 0  # ...and how much of them has gone
        self._hold: _Hold | None = None  # while replies are built from a snapshot (see hold)
        self.closed = False
        self.dropped: Sequence[bytes] = ()  # relayed messages not sent when the outbox closed

    def queue_to_flush(self, data: bytes) -> None:
        """Queue data; the caller sends it with flush() (or a writer already at it does).
        During a hold, it goes before what others queued since the hold began."""
        if self.closed:
            return
        frames, hold = self._frames, self._hold
        if frames is None:
            self._frames = [data]
        elif hold is None:
            frames.append(data)
        else:
            frames.insert(hold.place, data)
        if hold is not None:
            hold.place += 1
        self._queued += len(data)

    def hold(self) -> None:
        """Keep what others queue from now on (a message, a room's event) behind the replies
        this connection's own requests queue (queue_to_flush), until as many release() calls.

        A reply made from a snapshot of shared state (a room's members, who is online) may be
        queued a while after the snapshot was read (reads from Redis, from the disk): an event
        that changed the state meanwhile would reach the client before the reply, which then
        undoes it (a member shown leaving, then listed). Nothing is sent during a hold, so the
        order in the queue is the order on the wire."""
        if self.closed:
            return
        hold = self._hold
        if hold is None:
            hold = self._hold = _Hold(len(self._frames or ()))
            if self._writer is None:
                self._writer = hold  # (sends wait for a writer at it: see release)
        hold.count += 1

    def release(self) -> None:
        """End a hold (see hold): what was queued goes, in the hub's next round of callbacks."""
        hold = self._hold
        if hold is None:  # (ended by close)
            return
        hold.count -= 1
        if hold.count:
            return
        self._end_hold()
        if self._frames and not self._scheduled and self._writer is None:
            self._scheduled = DUE_ALONE
            self._loop.run_callback(send_queued, self)

    def _end_hold(self) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            if self._writer is hold:
                self._writer = None
            hold.ended.set()

    def queue_for_hub(self, data: bytes, wait: bool = False) -> bool:
        """Queue data for the hub to send, without the caller waiting on this socket (nor on
        its limit, unless ``wait``: then it waits for room first, as wait_for_room does).
        False, with nothing queued, if closed (or stalled meanwhile).

        The send happens once the caller yields to the hub, so that frames pushed by many
        greenlets in one round leave in one send; only a send that would block gets a
        writer greenlet of its own.
        """
        if wait and self._queued >= self._limit and not self.wait_for_room():
            return False
        if self.closed:
            return False
        frames = self._frames  # (queue_to_flush's, without its call: once per relayed message)
        if frames is None:
            self._frames = [data]
        else:
            frames.append(data)
        self._queued += len(data)
        if self._writer is None and not self._scheduled:
            self._scheduled = DUE_ALONE
            self._loop.run_callback(send_queued, self)
        return True

    def _send_queued_for_hub(self):
        """The hub's send of what is queued, once one is due (send_queued: compiled, where
        it was built): what the socket takes now; a writer greenlet is left the rest."""
        self._scheduled = NOT_DUE
        if self._writer is not None or not self._frames or self.closed:
            return
        if self._in_flight is not None:
            # (Left part way by a finish() whose time ran out: the rest of it goes first.)
            self._spawn_writer()
            return
        data = self._take_frames()
        try:
            sent = self._try_send(data)
        except OSError:
            self._fail()
            return
        if sent < len(data):
            self._in_flight, self._in_flight_sent = data, sent
            self._spawn_writer()

    def _spawn_writer(self) -> None:
        self._writer = gevent.spawn(self._write_all)

    def flush(self) -> None:
        """Send what is queued now, unless a writer is already at it: on a stream that can be
        tried without waiting, as the hub sends (send_queued: what the socket takes, a writer
        greenlet for the rest); on one that cannot (TLS, WebSocket), from this greenlet, where
        every send would otherwise need a writer greenlet of its own."""
        if self._can_try_send:
            send_queued(self)
        elif self._writer is None and (self._frames or self._in_flight is not None):
            self._writer = gevent.getcurrent()
            self._write_all()

    @property
    def due_with_a_room(self) -> bool:
        """Whether a send is due at the hub's next round of callbacks, with a room's message:
        all that is queued by then leaves in it, and a room's members are likely to be handed
        more in the same round, by its other senders."""
        return self._scheduled == DUE_WITH_A_ROOM

    def has_room(self) -> bool:
        return self._queued < self._limit

    def wait_for_room(self) -> bool:
        """Wait until the queue is under its limit; False if closed, or stalled meanwhile."""
        with gevent.Timeout(self._stall_timeout, False):
            while not self.closed and self._queued >= self._limit:
                room = self._room
                if room is None:
                    room = self._room = Event()
                room.clear()
                room.wait()
            return not self.closed
        self._stalled()
        return False

    def finish(self, timeout: float) -> None:
        """Give what is queued up to timeout seconds to leave, before the socket closes."""
        with gevent.Timeout(timeout, False):
            while True:
                self.flush()
                writer = self._writer
                if writer is None or writer is gevent.getcurrent():
                    return
                writer.join()  # (then what was queued meanwhile)

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def close(self) -> None:
        """Drop what is queued and refuse more; wakes producers waiting for room.

        Keeps the relayed messages not sent whole in ``dropped``, in order.
        """
        if not self.closed:
            unsent = self._frames or []
            if self._in_flight is not None:
                unsent = [_unfinished(self._in_flight, self._in_flight_sent), *unsent]
            self.dropped = [frame for chunk in unsent for frame in split_frames(chunk)[0] if frame[0] == INCOMING]
        self.closed = True
        # (A closed outbox never stalls; its hook is the session's method, and holding it
        # would keep the session and the outbox alive until the collector's next full round.)
        self._on_stall = _never
        self._frames = None
        self._in_flight = None
        self._end_hold()
        if self._room is not None:
            self._room.set()

    def _stalled(self):
        if not self.closed:
            on_stall = self._on_stall  # (closing lets go of it)
            self.close()
            on_stall()

    def _take_frames(self):
        frames, self._frames = self._frames, None
        assert frames is not None, "taken only when some are queued"
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def _fail(self):
        self.close()
        self._stream.shut_down()

    def _write_all(self):
        try:
            while not self.closed:
                if self._in_flight is None:
                    if not self._frames or self._hold is not None:
                        break
                    self._in_flight = data = self._take_frames()
                    self._in_flight_sent = self._try_send(data)
                self._send_in_flight()
        except _Stalled:
            self._stalled()
        except OSError:
            self._fail()
        finally:
            self._writer = self._hold  # (a hold begun meanwhile keeps the sends waiting)

    def _send_in_flight(self):
        data = self._in_flight
        assert data is not None
        view = memoryview(data)[self._in_flight_sent :]
        while view:
            # A timeout per send: a slow client making progress is not stalled.
            with gevent.Timeout(self._stall_timeout, _Stalled):
                sent = self._stream.send(view)
            view = view[sent:]
            self._in_flight_sent += sent
            self._count_sent(sent)
        self._in_flight = None

    def _try_send(self, data) -> int:
        """Send what the socket takes right now, without waiting; the number of bytes sent."""
        if not self._can_try_send:
            return 0
        try:
            sent = self._stream.try_send(data)
        except BlockingIOError:
            return 0
        self._count_sent(sent)
        return sent

    def _count_sent(self, sent):
        COUNTS.bytes_out += sent
        self._queued -= sent
        if self._room is not None and self._queued < self._limit:
            self._room.set()


class _Hold:
    """An outbox's hold (Outbox.hold): how many are asked, where the next reply goes, and what
    a finish() waits on while it lasts (it stands as the outbox's writer)."""

    __slots__ = ("count", "place", "ended")

    def __init__(self, place: int):
        self.count = 0
        self.place = place
        self.ended = Event()

    def join(self) -> None:
        self.ended.wait()


# The outbox's slots the compiled loops read and write (_fanout.c's and _relay.c's), in the
# order of _outbox.h: told once which they are.
SLOTS_IN_C = tuple(
    vars(Outbox)[name]
    for name in "_frames _queued _limit _writer _scheduled closed _stream _can_try_send _room _in_flight"
    " _in_flight_sent _loop".split()
)

# send_queued(outbox): Outbox._send_queued_for_hub, compiled where it was built (per member
# of a room, per round of the loop, the Python's five calls were what its send cost).
if compiled is not None:
    compiled.known_outboxes(Outbox, SLOTS_IN_C, COUNTS)
    compiled.known_socket_stream(TcpStream, vars(TcpStream)["_sock"])  # (its try_send, in C)
    send_queued = compiled.send_queued
else:
    send_queued = Outbox._send_queued_for_hub


def translated_in_c(outbox_type: type, reader_slot, translate) -> None:
    """The compiled send_queued sends such an outbox what translate(frames, its reader) makes
    of its frames, where that is not None (else its own _take_frames takes them, as without C)."""
    if compiled is not None:
        compiled.known_translation(outbox_type, reader_slot, translate)


def _never() -> None:
    pass


def _unfinished(data: bytes, sent: int) -> bytes:
    """The frames of data (which starts with a frame) not sent whole: a frame cut short is
    garbage to the client, which drops it with the connection."""
    start = 0
    while (end := frame_end(data, start)) is not None and end <= sent:
        start = end
    return data[start:]
