"""What comes for an IRC user between its login and its welcome.

With SASL the user is logged in at AUTHENTICATE, before registration ends: messages come for
it from then on, and an IRC client takes nothing of the kind before 001 (nor a channel's
lines before that channel's JOIN). So until the welcome has been translated, what comes is
held, as frames, and follows it: the messages, and what the welcome does not tell already
(it joins the user's channels as they are then, and its replay brings what was missed).
"""

from ...codec import Decoder, frame
from ...room_frames import ROOM_EVENT, ROOM_MESSAGE, EventKind, RoomEvent, RoomMessage

IRC_WELCOMED = 0xFE  # never on the wire: the welcome, marked (see welcomed)


def welcomed(frames: bytes) -> bytes:
    """The registration's answer (the welcome and what comes with it), marked: what was held
    for the welcome follows it (see translate.to_irc)."""
    return frame(IRC_WELCOMED, frames)


class Unwelcomed:
    """What follows the welcome: the messages kept for the user, the frames held for it, and
    what its replay brings of each channel."""

    __slots__ = ("kept", "frames", "replayed_upto")

    def __init__(self) -> None:
        self.kept = b""  # what the login answered after its OK: the messages kept for the user
        self.frames: list[bytes] = []  # what came for the user since, in order
        # Every channel the welcome joined -> the last message its replay brings (None: no replay).
        self.replayed_upto: dict[str, int | None] = {}

    @property
    def size(self) -> int:
        """The bytes held (bounded as the client's queue is: see IrcOutbox)."""
        return len(self.kept) + sum(map(len, self.frames))

    def still_news(self) -> list[bytes]:
        """What follows the welcome, in order: the messages kept, then the frames held but
        those the welcome told of: the events of a channel it joined (its JOIN shows the
        members and topic as they are after them; an invitation is not such) and the messages
        its replay brought."""
        return [self.kept, *(data for data in self.frames if not self._told(data))]

    def _told(self, data: bytes) -> bool:
        if data[0] != ROOM_EVENT and data[0] != ROOM_MESSAGE:
            return False
        [said] = Decoder.for_client().receive_data(data)  # (rare: no faster way is worth its code)
        joined = self.replayed_upto
        if type(said) is RoomEvent:
            return said.room in joined and said.kind is not EventKind.INVITED
        if type(said) is RoomMessage:
            upto = joined.get(said.room)
            return upto is not None and said.id <= upto
        return False
