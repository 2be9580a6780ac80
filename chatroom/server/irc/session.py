"""An IRC client's connection: a Session whose decoder reads IRC lines, whose answers come from
an IrcClient, and whose outbox turns every frame into IRC lines as it is queued. The limits,
timeouts, fair share, rate limit, parking and logs are the Session's, as for any client.

As IRC servers do, it pings a client that has said nothing for --idle-timeout seconds, and
ends the connection when another such while passes without a word (a client gone without a
FIN would otherwise hold its name for good).
"""

from ..connection.outbox import Outbox, translated_in_c
from ..connection.relay import compiled_privmsg_relay
from ..connection.session import Session
from .client import IrcClient
from .lines import LineReader, Privmsg, encode_line
from .nicks import SERVER_NAME, to_name, to_room
from .speedups import compiled
from .translate import irc_frame, to_irc


class IrcOutbox(Outbox):
    """An Outbox that sends the IRC lines for the frames it is given: what is queued stays
    frames (so that what a dropped client never took can be kept for it, as for any client),
    and each batch taken to be sent is translated at one go."""

    __slots__ = ("_reader",)

    def __init__(self, stream, limit, stall_timeout, on_stall, reader):
        super().__init__(stream, limit, stall_timeout, on_stall)
        self._reader = reader  # the IrcClient: its nickname and capabilities now

    def _take_frames(self):
        frames, self._frames = self._frames, None
        assert frames is not None, "taken only when some are queued"
        lines = to_irc(frames, self._reader)
        # What is queued is these frames alone (nothing is in flight when they are taken): the
        # lines that stand for them are counted instead.
        assert self._in_flight is None
        self._queued = len(lines)
        held = self._reader.unwelcomed
        if held is not None and held.size > self._limit:
            # (What is held for a welcome that does not come is bounded as the queue is: the
            # client is dropped as one that does not read.)
            self._loop.run_callback(self._stalled)
        return lines

    def close(self) -> None:
        self._in_flight = None  # (IRC lines, partly sent: nothing in them to keep)
        super().close()


# Where both are compiled, the hub's send takes an IRC client's lines without _take_frames:
# per member of a room per round, its two Python frames were a quarter of the server's time.
if compiled is not None:
    translated_in_c(IrcOutbox, vars(IrcOutbox)["_reader"], compiled.lines_for)


_WHY = {  # a timeout, as the ERROR before the end says it
    "idle": "Registration timed out",
    "frame_timeout": "Line too slow to arrive",
    "ping_timeout": "Ping timeout",
}


class IrcSession(Session):
    __slots__ = ("_irc", "_ping_timer", "_pinged")

    def __init__(self, stream, peer, directory, limits, on_end, accounts=None, rooms=None):
        super().__init__(stream, peer, directory, limits, on_end, accounts, rooms)
        self._irc = IrcClient(self.rules, self._quit, self.answer_later)
        self._decoder = LineReader()
        self._outbox = IrcOutbox(stream, limits.sendq, limits.send_timeout, self._on_stall, self._irc)
        # (Started once the client has said something: until then the Session's idle timeout
        # ends a connection that never does.)
        self._ping_timer = self._loop.timer(limits.idle_timeout, limits.idle_timeout)
        self._pinged = False  # a PING is out, and nothing came since

    def _answerer(self):
        return self._irc.answer

    def _relayer(self):
        return _answer_privmsgs if self._throttle is None else None

    def _ready_for_stored(self) -> bool:
        # (With SASL the login comes before the welcome, which a client may put off: a page is
        # taken out of the store once it has gone out, so the pages wait for the welcome.)
        return self._irc.registered

    # The quiet is timed only while the connection is parked: a connection being served has
    # heard from its client within the last _quiet_before_parking() seconds (no more than
    # --idle-timeout), and restarting a timer for every batch cost a tenth of the relay at
    # 1000x4. A parked one has been quiet that long already; the rest is timed from there.

    def _quiet_before_parking(self) -> float:
        return min(super()._quiet_before_parking(), self._limits.idle_timeout)

    def _serve(self) -> None:
        self._ping_timer.stop()  # (woken by a word from the client, or by its leaving)
        self._pinged = False
        super()._serve()
        if self.parked:
            idle = self._limits.idle_timeout
            self._ping_timer.close()
            self._ping_timer = self._loop.timer(idle - self._quiet_before_parking(), idle)
            self._ping_timer.start(self._quiet_for_a_while)

    def _quiet_for_a_while(self) -> None:
        if self._pinged:
            self._time_out("ping_timeout")
            return
        self._pinged = True
        self._outbox.queue_for_hub(irc_frame(encode_line("PING", SERVER_NAME)))

    def _time_out(self, reason: str) -> None:
        # As IRC servers do, ERROR says why before the end (clients show it): the connection
        # then ends as at a shutdown, once what was queued for it has gone out.
        self._say_farewell(_WHY[reason])
        self._end_reason = self._end_reason or reason
        self._stream.stop_reading()

    def stop_reading(self) -> None:
        self._say_farewell("Server shutting down")
        super().stop_reading()

    def _say_session_ended(self) -> None:
        self._say_farewell("Session ended from another device")

    def _say_farewell(self, why: str) -> None:
        if not self._irc.quitting:  # (a QUIT has had its ERROR)
            self._outbox.queue_for_hub(irc_frame(encode_line("ERROR", f"Closing link: {why}")))

    def _quit(self) -> None:
        self._end_reason = self._end_reason or "quit"  # (once the batch's answers are out)

    def _end(self) -> None:
        self._ping_timer.close()
        super()._end()

    @property
    def transport(self) -> str:
        return "irc"


# A run of PRIVMSGs to nicks and channels relayed the compiled way (see connection/relay.py), or None.
_answer_privmsgs = compiled_privmsg_relay(Privmsg, to_name, to_room, IrcSession, vars(IrcSession)["_irc"])
