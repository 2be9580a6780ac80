"""What the IRC port needs for IRCv3's read markers besides the markers: their messages' times,
and the MARKREAD line."""

from .lines import encode_line
from .nicks import SERVER_NAME
from .tags import irc_time


class MarkerTimes:
    """The times of the room messages a client was sent lately (a room's ids are counters, not
    times), so that a read marker another device moves reaches it as IRCv3's MARKREAD, which
    speaks in times."""

    KEPT = 1000  # per room, the newest

    def __init__(self) -> None:
        self._times: dict[str, dict[int, int]] = {}

    def note(self, room: str, message_id: int, time_ms: int) -> None:
        times = self._times.setdefault(room, {})
        times[message_id] = time_ms
        if len(times) > self.KEPT:
            del times[next(iter(times))]

    def time_of(self, room: str, message_id: int) -> int | None:
        return self._times.get(room, {}).get(message_id)


def markread_line(target: str, time_ms: int | None) -> bytes:
    """MARKREAD target with the time of its marker (``*``: none)."""
    stamp = "*" if time_ms is None else f"timestamp={irc_time(time_ms)}"
    return encode_line("MARKREAD", target, stamp, source=SERVER_NAME, text=False)
