"""How a client's connection ends, for :class:`~.session.Session`: timed out, stalled,
stopped at a shutdown, given up at the end of its drain, or closed by either side, with its
user logged out and what it never took kept where it may be.

A mixin: the Session holds the state (its stream, outbox, rules, and why it ended).
"""

import logging
from typing import TYPE_CHECKING

from ...codec import encode
from ...device_frames import SessionEnded
from ..operations.counts import COUNTS
from ..operations.logs import fields
from ..storage.store import StoreUnavailable

log = logging.getLogger(__name__)

SESSION_ENDED = encode(SessionEnded())
# How a session's end reads in the log (and in its rooms' events: a guest "logged out" or
# "disconnected"), by why it ended: an IRC QUIT is a logout.
_LOGOUT_HOW = {"quit": "logged out", "ended": "ended from another session"}
_STILL_SENDING = ("shutdown", "ended")  # ends the client has not asked for, nor been told of


class SessionEnd:
    if not TYPE_CHECKING:
        __slots__ = ()  # (at run time only: a Session's own slots hold its state, no __dict__)
    else:  # what Session holds and does
        from typing import Any

        from ..rules import Rules
        from .limits import Limits
        from .outbox import Outbox
        from .streams import Stream

        peer: str
        rules: Rules
        _stream: Stream
        _limits: Limits
        _decoder: Any  # (a Decoder, or the IRC port's LineReader)
        _outbox: Outbox
        _readable: Any  # (the hub's read watcher)
        _end_reason: str | None
        _on_end: Any

        @property
        def name(self) -> str | None: ...

        def _stop_frame_timer(self) -> None: ...

    def _frame_expired(self):
        log.info("%s did not complete a frame in %g s; closing", self.peer, self._limits.frame_timeout)
        self._time_out("frame_timeout")

    def _idle_expired(self):
        log.info("%s sent no frame in %g s; closing", self.peer, self._limits.idle_timeout)
        COUNTS.count(COUNTS.refused, "idle")
        self._time_out("idle")

    def _time_out(self, reason: str) -> None:
        """End the connection for a timeout (``reason``: the metrics' name for it); the IRC
        port says why first."""
        self.disconnect(reason=reason)

    def end_session(self) -> None:
        """End this session at its user's asking, from another of its sessions (END-SESSION):
        it answers nothing more; once what was queued for it is out, it is told why and logged
        out, and the tokens it was issued or resumed with are revoked (its client, which
        would take a closed connection for a lost one, must not come back with one)."""
        self._end_reason = self._end_reason or "ended"
        self._stream.stop_reading()

    def _say_session_ended(self) -> None:
        """Tell the client its session was ended by another (the IRC port says it its way)."""
        self._outbox.queue_for_hub(SESSION_ENDED)

    def _revoke_tokens(self) -> None:
        try:
            self.rules.revoke_tokens()
        except StoreUnavailable:
            log.warning("%s: session ended, its tokens not revoked (the store is unavailable)", self.peer)

    def _end(self):
        self._readable.close()
        self._stop_frame_timer()
        reason = self._end_reason or ("oversize" if self._decoder.broken else "peer_closed")
        COUNTS.count(COUNTS.disconnects, reason)
        try:
            if reason == "ended":  # (revoked before the client can learn why, and act)
                self._revoke_tokens()
                self._say_session_ended()
            # Still logged in while what was sent drains: what it never takes can be kept.
            self._outbox.finish(self._limits.send_timeout)
            self._outbox.close()
            self.rules.log_out(_LOGOUT_HOW.get(reason, "disconnected"))  # (held messages kept)
            self.rules.closed()
            # After a frame too large, at a shutdown, or with its session ended elsewhere, the
            # client may still be sending: close gracefully, or a reset could destroy replies
            # (and the SESSION-ENDED) it has not read yet.
            self._stream.close(gracefully=self._decoder.broken or reason in _STILL_SENDING)
            log.info("disconnect %s", self.peer, extra=fields("disconnect", peer=self.peer, reason=reason))
        finally:
            self._on_end(self)

    def _on_stall(self):
        COUNTS.stalled_drops += 1
        dropped = self._outbox.dropped
        kept = self.rules.keep_undelivered(dropped)
        log.warning(
            "%s (%s) is not reading; disconnecting, %d relayed messages undelivered, %d of them kept for later",
            self.name or "client",
            self.peer,
            len(dropped),
            kept,
            extra=fields("stalled", name=self.name, peer=self.peer, undelivered=len(dropped), kept=kept),
        )
        self.disconnect(abort=True, reason="stalled")

    def stop_reading(self) -> None:
        """Take no more requests, from now: the session sends what it has queued, then ends."""
        self._end_reason = "shutdown"
        self._stream.stop_reading()

    def give_up(self) -> tuple[int, int]:
        """At the end of a shutdown's drain: keep what the client did not take, if its user is
        registered, and end the connection (without a reset); (messages kept, not kept)."""
        self._end_reason = self._end_reason or "shutdown"
        self._outbox.close()
        dropped = self._outbox.dropped
        kept = self.rules.keep_undelivered(dropped)
        self._stream.shut_down()
        return kept, len(dropped) - kept

    def disconnect(self, abort: bool = False, reason: str = "shutdown") -> None:
        """End this connection from any greenlet (its own greenlet cleans up).

        ``abort`` discards what the kernel still holds for the client, as for one that has
        stopped reading: closing then resets the connection instead of lingering to send.
        ``reason`` is what the metrics count it as.
        """
        self._end_reason = self._end_reason or reason
        self._outbox.close()
        if abort:
            self._stream.discard_unsent()
        self._stream.shut_down()
