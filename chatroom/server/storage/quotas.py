"""What one address or one account may make the server keep, with the options that set it.

One place for them, as :mod:`..connection.limits` is for connections: registrations per
address an hour, history bytes per account a day, and an offline mailbox's size and the share
of it one sender may fill (so that a stranger cannot fill a user's mailbox and keep their
friends' messages out).
"""

import collections
import time
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Quotas:
    registrations_per_hour: int = 20
    history_mb_per_day: float = 64.0
    mailbox_mb: float = 16.0
    mailbox_share: float = 0.25


OPTIONS = {
    "registrations_per_hour": (int, "N", "names one address may register an hour (default %(default)s)"),
    "history_mb_per_day": (
        float,
        "MB",
        "text one registered user's messages may add to the history a day; past it they are relayed, not kept "
        "(default %(default)s)",
    ),
    "mailbox_mb": (float, "MB", "text kept for one offline user (default %(default)s; 1000 messages at most)"),
    "mailbox_share": (
        float,
        "FRACTION",
        "the part of an offline user's mailbox one sender may fill (default %(default)s)",
    ),
}


def add_arguments(group) -> None:
    for field in fields(Quotas):
        kind, metavar, help_text = OPTIONS[field.name]
        group.add_argument(
            "--" + field.name.replace("_", "-"), type=kind, default=field.default, metavar=metavar, help=help_text
        )


def from_arguments(args) -> Quotas:
    return Quotas(**{field.name: getattr(args, field.name) for field in fields(Quotas)})


class Window:
    """Events per key in a sliding window of ``seconds``."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self._seconds = seconds
        self._clock = clock
        self._times: dict[str, collections.deque] = {}

    def count(self, key: str) -> int:
        times = self._times.get(key)
        if times is None:
            return 0
        horizon = self._clock() - self._seconds
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._times[key]
            return 0
        return len(times)

    def add(self, key: str) -> None:
        if len(self._times) > 10_000:
            for stale in list(self._times):
                self.count(stale)
        self._times.setdefault(key, collections.deque()).append(self._clock())


class DailyBytes:
    """Bytes per key since the start of the current day (UTC)."""

    def __init__(self):
        self._day = -1
        self._bytes: dict[str, int] = {}

    def add(self, key: str, size: int, limit: int) -> bool:
        """Count size bytes for key unless it would pass limit; whether they were counted."""
        day = int(time.time() // 86_400)
        if day != self._day:
            self._day, self._bytes = day, {}
        total = self._bytes.get(key, 0) + size
        if total > limit:
            return False
        self._bytes[key] = total
        return True
