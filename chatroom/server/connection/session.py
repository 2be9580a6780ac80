"""One client's connection on the server: read frames, have each answered, deliver messages.

A Session reads, batches, times and delivers; what each request means is the business of its
:class:`~..rules.Rules`. It answers every frame with exactly one reply, in order, in a
greenlet of its own, and is the mailbox other sessions deliver to while its user is logged in.
"""

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

import gevent

from ...codec import Decoder
from ..operations.counts import COUNTS, HANDOVER_SAMPLE
from ..operations.logs import fields
from ..pending import Pending
from ..presence.directory import Directory
from ..replies import OK, reply_name
from ..rooms.registry import Rooms
from ..rooms.shared import SharedRooms
from ..rules import Rules
from ..storage.accounts import Accounts
from .ending import SessionEnd
from .fanout import offer_each
from .limits import Limits, TokenBucket
from .outbox import Outbox
from .quiet import QuietWait
from .relay import compiled_relay
from .servers import serve
from .streams import Stream

log = logging.getLogger(__name__)

FAIR_SHARE = 64  # frames answered before other connections get a turn
QUIET_BEFORE_PARKING = 1.0  # seconds without data before a connection gives up its greenlet


class Session(SessionEnd):
    """One client's connection, from accept to close.

    A Session has a greenlet while its client is active. After QUIET_BEFORE_PARKING seconds
    without a byte it *parks*: it gives its greenlet up (to serve another session: see
    servers.py), and a read watcher finds it one when more arrives (a timer meanwhile guards a
    frame left incomplete). A greenlet waiting for its client costs about 9 KB (its saved C
    stack and its page of Python frames); a parked connection costs none of that, which is
    what lets one process hold tens of thousands of idle clients. Busy connections keep their
    greenlet, so the relay path pays nothing.
    """

    __slots__ = (
        "peer",
        "rules",
        "_stream",
        "_limits",
        "_decoder",
        "_outbox",
        "_throttle",
        "_on_end",
        "_loop",
        "_readable",
        "_frame_timer",
        "_end_reason",
        "_catch_up",
        "_serving",
        "_holding",
        "wants_ids",
    )

    def __init__(
        self,
        stream: Stream,
        peer: str,
        directory: Directory,
        limits: Limits,
        on_end,
        accounts: Accounts | None = None,
        rooms: Rooms | SharedRooms | None = None,
    ):
        self.peer = peer
        self.rules = Rules(self, directory, accounts, peer, rooms)
        self._stream = stream
        self._end_reason: str | None = None  # why the server ended it, for the metrics
        self._limits = limits
        self._decoder = Decoder.for_server()
        self._outbox = Outbox(stream, limits.sendq, limits.send_timeout, self._on_stall)
        self._throttle = TokenBucket(limits.rate_limit) if limits.rate_limit else None
        self._on_end = on_end
        self._loop = gevent.get_hub().loop
        self._readable = self._loop.io(stream.fileno(), 1)
        self._frame_timer = None
        self._catch_up: gevent.Greenlet | None = None  # handing out stored messages, page by page
        self._serving: object = None  # the greenlet answering the client's requests, while one does
        self._holding = False  # the reply being built holds others' pushes back (see hold_pushes)
        self.wants_ids = False  # relayed messages go out as DIRECT-MESSAGE (version 3), not INCOMING

    def _answerer(self) -> Callable[[Any], "bytes | Pending"]:
        """What answers a decoded frame (the IRC port has its own)."""
        return self.rules.answer

    def _relayer(self) -> Callable[[list, int, int, "Session"], int] | None:
        """What answers a run of SENDTOs at once (see relay.py); None: one by one, as a client
        under a rate limit takes a token for each."""
        return _answer_sendtos if self._throttle is None else None

    @property
    def name(self) -> str | None:
        """Who is logged in on this connection, if anyone."""
        return self.rules.name

    @property
    def transport(self) -> str:
        return self._stream.transport

    @property
    def host(self) -> str:
        """The client's address (without the port)."""
        return self.rules.host

    @property
    def unsent_bytes(self) -> int:
        return self._outbox.queued_bytes

    def start(self) -> None:
        log.info("connect %s", self.peer, extra=fields("connect", peer=self.peer, transport=self.transport))
        # A connection must say something: a silent one would hold its place for good.
        self._set_timer(self._limits.idle_timeout, self._idle_expired)
        if self._stream.buffered():
            # What came with the handshake will not make the socket readable: serve it now,
            # from the hub, as a read watcher would.
            self._loop.run_callback(self._wake)
        else:
            self._park()

    def _park(self):
        # A parked connection holds no greenlet, only this watcher (a greenlet object costs
        # far more than a bound method, and most connections are quiet).
        self._readable.start(self._wake)

    @property
    def parked(self) -> bool:
        """Whether the connection waits without a greenlet, for its socket to be readable."""
        return self._readable.active and self._readable.callback == self._wake

    def _wake(self):
        # (The hub, the socket readable.) Into a greenlet at once, as the hub would switch
        # into one waiting in recv(): no extra round of the event loop.
        serve(self._serve)

    def _serve(self):
        """Answer what arrives until the client falls quiet, then park; or end the connection."""
        self._readable.stop()
        self._serving = gevent.getcurrent()
        quiet = QuietWait(self._stream, self._quiet_before_parking(), self._readable)
        try:
            while True:
                data = quiet.receive()
                if data is None:  # (fell quiet)
                    left = self._stream.unfinished_for()
                    if left is not None:  # a WebSocket message in fragments: it too must end in time
                        self._set_timer(left, self._frame_expired)
                    self._serving = None
                    self._park()
                    return
                # Once the server ends the connection (a shutdown, a stall), nothing more
                # is answered: what arrives now was never acknowledged.
                if self._end_reason is not None or not self._serve_batch(data):
                    break
                # recv() does not yield while data is waiting: a busy client would be served
                # again and again while others wait. A yield after every batch keeps the
                # service round-robin, lets more frames gather per send, and is where the
                # deliveries queued for the hub leave and a login's stored messages start.
                gevent.sleep(0)
        except OSError:
            pass  # the peer reset or vanished: an ordinary end of a connection
        except (Exception, gevent.Timeout):
            # A bug, not the peer: say so, and still end the session, or its name would
            # stay taken (this runs on the hub, where nobody else would clean up). (A stray
            # gevent.Timeout is a BaseException, and was once such a bug.)
            log.exception("%s: unexpected error; closing the connection", self.peer)
        self._serving = None
        self._end()

    def _quiet_before_parking(self) -> float:
        """Seconds without a byte after which the connection parks (the IRC port's may be less)."""
        return QUIET_BEFORE_PARKING

    def _serve_batch(self, data) -> bool:
        """Answer every frame data completes; False when the connection is over (or ended now)."""
        if not data:
            return False
        counts = COUNTS
        counts.bytes_in += len(data)
        counts.batches += 1
        # One batch in HANDOVER_SAMPLE is timed: timing all would cost more than the metrics may.
        timed = not counts.batches % HANDOVER_SAMPLE
        arrived = perf_counter() if timed else 0.0
        decoder = self._decoder
        outbox = self._outbox
        had_partial_frame = decoder.pending > 0
        events = decoder.receive_data(data)
        counts.frames += len(events)
        waiting: list | None = None  # replies held behind one still on its way (from another node), in order
        answer = self._answerer()
        relay = self._relayer()
        index = 0
        while index < len(events):
            turn_ends = index - index % FAIR_SHARE + FAIR_SHARE
            if relay is not None and waiting is None:  # (the common SENDTOs, up to a turn's end, at once)
                index = relay(events, index, turn_ends, self)
            if index < turn_ends and index < len(events):
                event = events[index]
                index += 1
                if self._throttle is not None:
                    self._wait_for_a_token(outbox)
                reply = answer(event)
                held, self._holding = self._holding, False
                if waiting is not None:
                    waiting.append((reply, event, held))
                elif type(reply) is Pending:
                    waiting = [(reply, event, held)]
                else:
                    if reply:  # (an IRC client's request may be done with nothing to answer: counted as OK)
                        if reply is not OK:
                            COUNTS.count_reply(reply_name(reply, event), event)
                        outbox.queue_to_flush(reply)
                    if held:
                        outbox.release()
            if not index % FAIR_SHARE:
                # A client pipelining thousands of frames must not keep the others waiting.
                if waiting is not None:
                    self._settle(waiting)
                    waiting = None
                outbox.flush()
                gevent.sleep(0)
                if self._end_reason is not None:
                    break  # ended meanwhile: the rest of the batch goes unanswered
        if waiting is not None:
            self._settle(waiting)
        if timed and events:
            counts.handover.observe(perf_counter() - arrived)
        # A send a room's message made due (at the yield after this batch) takes the replies
        # too, and what the room's other senders add meanwhile: one send, not two. Otherwise
        # the replies go now (what the socket takes, and a writer greenlet for the rest: the
        # session goes on reading, its queue's bound holding it back).
        if not outbox.due_with_a_room:
            outbox.flush()
        if self.rules.held is not None and self._catch_up is None and self._ready_for_stored():
            # (A login with stored messages.)
            self._catch_up = gevent.spawn(self._hand_out_stored)
        if decoder.broken:
            log.info("%s sent a frame over the size limit; closing", self.peer)
            return False
        if not outbox.has_room() and not outbox.wait_for_room():
            return False
        if not decoder.pending:
            self._stop_frame_timer()
        elif events or not had_partial_frame:
            # A new frame began in this batch. It must not trickle in forever: it would hold
            # its buffer for good. (This timer also replaces the idle one of a new connection.)
            self._set_timer(self._limits.frame_timeout, self._frame_expired)
        return self._end_reason is None

    def _wait_for_a_token(self, outbox) -> None:
        """--rate-limit: take a token for one frame, waiting (the replies so far sent) for one."""
        assert self._throttle is not None
        while wait := self._throttle.take():
            COUNTS.rate_limit_waits += 1
            outbox.flush()
            gevent.sleep(wait)

    def _settle(self, waiting) -> None:
        """Queue the replies held behind messages on their way to other nodes, in order, once
        those are answered."""
        for reply, event, held in waiting:
            if type(reply) is Pending:
                reply = reply.reply()
            if reply is not OK:
                COUNTS.count_reply(reply_name(reply, event), event)
            self._outbox.queue_to_flush(reply)
            if held:
                self._outbox.release()

    def _ready_for_stored(self) -> bool:
        """Whether the client may be handed the messages kept for it now (see _hand_out_stored)."""
        return True

    def _hand_out_stored(self) -> None:
        """After a login: the pages of messages kept for the user, each once the one before has
        been handed over (then removed from the store), then the live messages held meanwhile."""
        outbox, rules = self._outbox, self.rules
        try:
            while rules.held is not None:
                outbox.finish(self._limits.send_timeout)
                if outbox.closed:
                    return  # what was not handed over stays stored, for the next login
                if outbox.queued_bytes:
                    continue  # a slow reader: the page is not all out yet
                outbox.queue_to_flush(rules.next_stored())
                outbox.flush()
        finally:
            self._catch_up = None

    def _set_timer(self, timeout, expired):
        self._stop_frame_timer()
        timer = self._loop.timer(timeout)
        timer.start(expired)
        self._frame_timer = timer

    def _stop_frame_timer(self):
        if self._frame_timer is not None:
            self._frame_timer.close()
            self._frame_timer = None

    def hold_pushes(self) -> None:
        """(The rules, building a reply from a snapshot of shared state: a room's members, who
        is online.) What others push to the client from now on follows that reply (see
        Outbox.hold): an event that changed the state meanwhile must not come before it.
        Elsewhere than in the greenlet answering requests, answer_later holds."""
        if not self._holding and gevent.getcurrent() is self._serving:
            self._holding = True
            self._outbox.hold()

    def answer_later(self, make: Callable[[], bytes]) -> None:
        """Queue what make() returns, frames no request asked for, from a greenlet of the
        caller's: as a reply is, held before what others push meanwhile (see hold_pushes)."""
        outbox = self._outbox
        outbox.hold()
        try:
            frames = make()
            if frames:
                outbox.queue_to_flush(frames)
        finally:
            outbox.release()

    # --- Mailbox ------------------------------------------------------------------------

    def deliver(self, frame: bytes, wait: bool = True) -> bool:
        """Queue a relayed message (a ready 0x83 frame) for this client. A full queue makes
        the caller wait for room (or fail, if the client is stalled), unless ``wait`` is false:
        then the frame is queued over the limit, and only a client that stops reading is
        dropped."""
        outbox = self._outbox
        if self.rules.held is None:
            return outbox.queue_for_hub(frame, wait)
        if wait and not outbox.has_room() and not outbox.wait_for_room():
            return False
        held = self.rules.held  # (again: the hand-out may have ended while this waited)
        if outbox.closed:
            return False
        if held is None:  # all handed out: queued; or a logout kept what was held: so is this
            return self.rules.name is not None and outbox.queue_for_hub(frame, wait)
        held.append(frame)
        return True

    def offer(self, frame: bytes) -> bool:
        """Queue a room's frame if there is room (never held behind stored messages); a client
        whose queue is full is dropped as stalled (a registered one reads what it missed from
        the room's history)."""
        return offer_each((self._outbox,), frame) == 1

    def room_sink(self) -> Outbox:
        return self._outbox


_answer_sendtos = compiled_relay(Session)  # (None where _relay.c was not built)
