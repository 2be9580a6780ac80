"""One client's connection on the server: read frames, answer each, relay messages.

A Session answers every frame with exactly one reply, in order, in a greenlet of its own,
and is also the mailbox other sessions deliver to while its user is logged in.
"""

import logging
import time
from collections.abc import Callable
from time import perf_counter
from typing import Any

import gevent
from greenlet import greenlet

from ..codec import Decoder, encode
from ..protocol import (
    EXTENSION_REQUESTS,
    Authenticate,
    ChangePassword,
    FrameTooLarge,
    Hello,
    HistoryRequest,
    Incoming,
    ListUsers,
    Login,
    Logout,
    Malformed,
    Register,
    Response,
    SendTo,
    Status,
    UserList,
    is_valid_text,
    is_valid_username,
)
from . import extension
from .directory import Directory, DirectoryUnavailable
from .identity import Accounts
from .limits import Limits
from .logs import fields
from .metrics import COUNTS, HANDOVER_SAMPLE
from .outbox import Outbox
from .sockets import close_gracefully, discard_unsent, sends_without_waiting, shut_down, stop_reading
from .store import StoreUnavailable

log = logging.getLogger(__name__)

OK = encode(Response(Status.OK))
FAILURE = encode(Response(Status.FAILURE))
MALFORMED = encode(Response(Status.MALFORMED))
REGISTERED = encode(Response(Status.REGISTERED))
STORED = encode(Response(Status.STORED))
_TYPE_NAMES = {
    ListUsers: "list",
    Login: "login",
    Logout: "logout",
    Hello: "hello",
    Register: "register",
    Authenticate: "authenticate",
    ChangePassword: "change_password",
    HistoryRequest: "history",
}
RECV_SIZE = 65536
FAIR_SHARE = 64  # frames answered before other connections get a turn
QUIET_BEFORE_PARKING = 1.0  # seconds without data before a connection gives up its greenlet


class Session:
    """One client's connection, from accept to close.

    A Session has a greenlet while its client is active. After QUIET_BEFORE_PARKING seconds
    without a byte it *parks*: the greenlet ends, and a read watcher starts a new one when
    more arrives (a timer meanwhile guards a frame left incomplete). A greenlet blocked in
    recv() costs about 9 KB (its saved C stack and its page of Python frames); a parked
    connection costs none of that, which is what lets one process hold tens of thousands of
    idle clients. Busy connections keep their greenlet, so the relay path pays nothing.
    """

    __slots__ = (
        "peer",
        "name",
        "_sock",
        "directory",
        "_limits",
        "_decoder",
        "_outbox",
        "_throttle",
        "_on_end",
        "_hub",
        "_loop",
        "_readable",
        "_frame_timer",
        "accounts",
        "_extended",
        "registered",
        "held",
        "transport",
        "_end_reason",
    )

    def __init__(self, sock, peer: str, directory: Directory, limits: Limits, on_end, accounts: Accounts | None = None):
        self.peer = peer
        self.name: str | None = None
        self._sock = sock
        self.directory = directory
        self.accounts = accounts
        self._extended = False  # the client said HELLO
        self.registered = False  # logged in under a registered name, with its password
        self.transport = getattr(sock, "transport", None) or ("tcp" if sends_without_waiting(sock) else "tls")
        self._end_reason: str | None = None  # why the server ended it, for the metrics
        self.held: list[bytes] | None = None  # while stored messages are fetched: live ones, held back to follow them
        self._limits = limits
        self._decoder = Decoder.for_server()
        self._outbox = Outbox(sock, limits.sendq, limits.send_timeout, self._on_stall)
        self._throttle = _Throttle(limits.rate_limit) if limits.rate_limit else None
        self._on_end = on_end
        self._hub = gevent.get_hub()
        self._loop = self._hub.loop
        self._readable = self._loop.io(sock.fileno(), 1)
        self._frame_timer = None

    def start(self) -> None:
        log.info("connect %s", self.peer, extra=fields("connect", peer=self.peer, transport=self.transport))
        # A connection must say something: a silent one would hold its place for good.
        self._set_timer(self._limits.idle_timeout, self._idle_expired)
        self._park()

    def _park(self):
        # When the socket turns readable, the hub switches straight into a new greenlet, as
        # it would into one waiting in recv(): no extra round of the event loop.
        self._readable.start(greenlet(self._serve, parent=self._hub).switch)

    def _serve(self):
        """Answer what arrives until the client falls quiet, then park; or end the connection."""
        self._readable.stop()
        try:
            while True:
                try:
                    with gevent.Timeout(QUIET_BEFORE_PARKING):
                        data = self._sock.recv(RECV_SIZE)
                except gevent.Timeout:
                    self._park()
                    return
                if not self._serve_batch(data):
                    break
                # recv() does not yield while data is waiting: without this, a busy client
                # would be served again and again while others wait. Yielding after every
                # batch keeps the service round-robin (and lets more frames gather per send).
                gevent.sleep(0)
        except OSError:
            pass  # the peer reset or vanished: an ordinary end of a connection
        except Exception:
            # A bug, not the peer: say so, and still end the session, or its name would
            # stay taken (this runs on the hub, where nobody else would clean up).
            log.exception("%s: unexpected error; closing the connection", self.peer)
        self._end()

    def _serve_batch(self, data) -> bool:
        """Answer every frame data completes; False when the connection is over."""
        if not data:
            return False
        counts = COUNTS
        counts.bytes_in += len(data)
        counts.batches += 1
        # One batch in HANDOVER_SAMPLE is timed: timing them all would cost the relay path
        # more than the 5% the metrics may take.
        timed = not counts.batches % HANDOVER_SAMPLE
        arrived = perf_counter() if timed else 0.0
        decoder = self._decoder
        outbox = self._outbox
        had_partial_frame = decoder.pending > 0
        events = decoder.receive_data(data)
        counts.frames += len(events)
        waiting = None  # replies held behind one still on its way (from another node), in order
        later = _Later
        for count, event in enumerate(events, 1):
            if self._throttle is not None:
                self._throttle.take(outbox)
            reply = self._answer(event)
            if waiting is not None:
                waiting.append((reply, event))
            elif reply.__class__ is later:
                waiting = [(reply, event)]
            else:
                if reply is not OK:
                    counts.count_reply(reply, event)
                outbox.queue_to_flush(reply)
            if not count % FAIR_SHARE:
                # A client pipelining thousands of frames must not keep the others waiting.
                if waiting is not None:
                    self._settle(waiting)
                    waiting = None
                outbox.flush()
                gevent.sleep(0)
        if waiting is not None:
            self._settle(waiting)
        if timed and events:
            counts.handover.observe(perf_counter() - arrived)
        outbox.flush()
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
        return True

    def _settle(self, waiting) -> None:
        """Queue the replies held behind messages on their way to other nodes, in order, once
        those are answered."""
        for reply, event in waiting:
            if type(reply) is _Later:
                reply = reply.outcome()
            if reply is not OK:
                COUNTS.count_reply(reply, event)
            self._outbox.queue_to_flush(reply)

    def _set_timer(self, timeout, expired):
        self._stop_frame_timer()
        timer = self._loop.timer(timeout)
        timer.start(expired)
        self._frame_timer = timer

    def _stop_frame_timer(self):
        if self._frame_timer is not None:
            self._frame_timer.close()
            self._frame_timer = None

    def _frame_expired(self):
        log.info("%s did not complete a frame in %g s; closing", self.peer, self._limits.frame_timeout)
        self.disconnect(reason="frame_timeout")

    def _idle_expired(self):
        log.info("%s sent no frame in %g s; closing", self.peer, self._limits.idle_timeout)
        COUNTS.count(COUNTS.refused, "idle")
        self.disconnect(reason="idle")

    def _end(self):
        self._readable.close()
        self._stop_frame_timer()
        reason = self._end_reason or ("oversize" if self._decoder.broken else "peer_closed")
        COUNTS.count(COUNTS.disconnects, reason)
        try:
            self.log_out("disconnected")
            self._outbox.finish(self._limits.send_timeout)
            self._outbox.close()
            if self._decoder.broken:
                close_gracefully(self._sock)  # the client may still be sending the huge frame
            else:
                self._sock.close()
            log.info("disconnect %s", self.peer, extra=fields("disconnect", peer=self.peer, reason=reason))
        finally:
            self._on_end(self)

    def _on_stall(self):
        COUNTS.stalled_drops += 1
        dropped = self._outbox.dropped
        kept = self._keep_dropped(dropped)
        log.warning(
            "%s (%s) is not reading; disconnecting, %d relayed messages undelivered, %d of them kept for later",
            self.name or "client",
            self.peer,
            len(dropped),
            kept,
            extra=fields("stalled", name=self.name, peer=self.peer, undelivered=len(dropped), kept=kept),
        )
        self.disconnect(abort=True, reason="stalled")

    def _keep_dropped(self, frames) -> int:
        """Keep the messages a registered user was sent but never took, for their next login."""
        accounts, name = self.accounts, self.name
        if not frames or accounts is None or name is None or not self.registered:
            return 0
        kept = 0
        try:
            for message in Decoder.for_client().receive_data(b"".join(frames)):
                kept += accounts.keep_offline(name, message.sender, message.text, record=False)
        except StoreUnavailable:
            pass
        return kept

    def stop_reading(self) -> None:
        """Take no more requests: the session sends what it has queued, then ends."""
        self._end_reason = "shutdown"
        stop_reading(self._sock)

    @property
    def host(self) -> str:
        """The client's address (without the port)."""
        return self.peer.rsplit(":", 1)[0]

    @property
    def unsent_bytes(self) -> int:
        return self._outbox.queued_bytes

    def disconnect(self, abort: bool = False, reason: str = "shutdown") -> None:
        """End this connection from any greenlet (its own greenlet cleans up).

        ``abort`` discards what the kernel still holds for the client, as for one that has
        stopped reading: closing then resets the connection instead of lingering to send.
        ``reason`` is what the metrics count it as.
        """
        self._end_reason = self._end_reason or reason
        self._outbox.close()
        if abort:
            discard_unsent(self._sock)
        shut_down(self._sock)

    # --- Mailbox ------------------------------------------------------------------------

    deliver_later: Callable[[bytes], Any] | None = None  # delivers at once (see Mailbox)

    def deliver(self, frame: bytes, wait: bool = True) -> bool:
        """Queue a relayed message (a ready 0x83 frame) for this client. A full queue makes
        the caller wait for room (or fail, if the client is stalled), unless ``wait`` is false:
        then the frame is queued over the limit, and only a client that stops reading is
        dropped."""
        outbox = self._outbox
        if wait and not outbox.has_room() and not outbox.wait_for_room():
            return False
        if outbox.closed:
            return False
        if self.held is not None:
            self.held.append(frame)
        else:
            outbox.queue_for_hub(frame)
        return True

    # --- Answers ------------------------------------------------------------------------

    def _answer(self, event) -> bytes:
        kind = type(event)
        try:
            if kind is SendTo:
                return self._send_to(event.recipient, event.text)
            COUNTS.count(COUNTS.frames_by_type, _TYPE_NAMES.get(kind, "malformed"))
            if kind is ListUsers:
                return encode(UserList(tuple(self.directory.names())))
            if kind is Login:
                return self._log_in(event.name)
            if kind is Logout:
                return OK if self.log_out("logged out") else FAILURE
            if kind is Hello:
                self._extended = True
                return OK
            if kind in EXTENSION_REQUESTS and self._extended:
                return extension.answer(self, event) if self.accounts is not None else FAILURE
        except (DirectoryUnavailable, StoreUnavailable):
            return FAILURE
        assert kind is Malformed or kind is FrameTooLarge or kind in EXTENSION_REQUESTS, event
        return MALFORMED

    def _send_to(self, recipient, text):
        sender = self.name
        if sender is None or not is_valid_text(text):
            return FAILURE
        # No need to validate the recipient's name: only valid names are ever logged in,
        # so an invalid one is simply not found.
        mailbox = self.directory.find(recipient)
        if mailbox is None:
            return self._keep_for_later(sender, recipient, text)
        if mailbox.deliver_later is not None:  # on another node: answered once it is there
            return _Later(self, sender, recipient, text, mailbox.deliver_later(encode(Incoming(sender, text))))
        if not mailbox.deliver(encode(Incoming(sender, text))):
            return self._keep_for_later(sender, recipient, text)
        accounts = self.accounts  # (as in _delivered, inline: this is the relay path)
        if accounts is not None and (self.registered or recipient in accounts.registered_names):
            accounts.record(sender, recipient, text)
        return OK

    def _delivered(self, sender, recipient, text):
        accounts = self.accounts
        if accounts is not None and (self.registered or recipient in accounts.registered_names):
            accounts.record(sender, recipient, text)

    def _keep_for_later(self, sender, recipient, text):
        """For a client that said HELLO, a message to a registered user who is offline is
        kept (STORED); otherwise, as in the seed protocol, the send fails."""
        accounts = self.accounts
        if not self._extended or accounts is None or recipient not in accounts.registered_names:
            return FAILURE
        return STORED if accounts.keep_offline(recipient, sender, text) else FAILURE

    def _log_in(self, name):
        if self.name is not None or not is_valid_username(name):
            return FAILURE
        if self.accounts is not None and self.accounts.requires_password(name):
            return REGISTERED if self._extended else FAILURE  # AUTHENTICATE, with the password
        if not self.directory.claim(name, self):
            return FAILURE
        self.name = name
        log.info("login %s (%s)", name, self.peer, extra=fields("login", name=name, peer=self.peer))
        return OK

    def log_out(self, how) -> bool:
        if self.name is None:
            return False
        name, self.name = self.name, None
        self.registered = False
        try:
            self.directory.release(name, self)
        except DirectoryUnavailable:
            pass  # the shared directory tells Redis once it is back
        log.info("logout %s (%s, %s)", name, self.peer, how, extra=fields("logout", name=name, peer=self.peer, how=how))
        return True


class _Later:
    """A SENDTO handed to another node: its reply, once that node has it (or not)."""

    __slots__ = ("_session", "_sender", "_recipient", "_text", "_delivered")

    def __init__(self, session, sender, recipient, text, delivered):
        self._session = session
        self._sender = sender
        self._recipient = recipient
        self._text = text
        self._delivered = delivered  # an AsyncResult

    def outcome(self) -> bytes:
        try:
            delivered = self._delivered.get()
        except Exception:  # Redis failed: nothing is known to be delivered
            return FAILURE
        if delivered:
            self._session._delivered(self._sender, self._recipient, self._text)
            return OK
        try:
            return self._session._keep_for_later(self._sender, self._recipient, self._text)
        except StoreUnavailable:
            return FAILURE


class _Throttle:
    """A token bucket: a connection may send ``rate`` frames a second, in bursts of as many."""

    __slots__ = ("_rate", "_tokens", "_last")

    def __init__(self, rate: float):
        self._rate = rate
        self._tokens = rate
        self._last = time.monotonic()

    def take(self, outbox) -> None:
        """Take a token for one frame, first waiting (with replies so far sent) if none is left."""
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            COUNTS.rate_limit_waits += 1
            outbox.flush()
            gevent.sleep((1 - self._tokens) / self._rate)
            self._tokens = 1.0
            self._last = time.monotonic()
        self._tokens -= 1
