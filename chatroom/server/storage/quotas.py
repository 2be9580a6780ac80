"""What one address or one account may make the server keep, with the options that set it.

One place for them, as :mod:`..connection.limits` is for connections: registrations per
address an hour, history bytes per account a day, and an offline mailbox's size and the share
of it one sender may fill (so that a stranger cannot fill a user's mailbox and keep their
friends' messages out); how many rooms a user may be in, how many members a room may
have, and how many rooms the server holds; and how many devices one account may use at once.
"""

import collections
import time
from collections.abc import Hashable
from dataclasses import dataclass

from ...arguments import add_dataclass_arguments, dataclass_from_arguments


@dataclass(frozen=True)
class Quotas:
    registrations_per_hour: int = 20
    history_mb_per_day: float = 64.0
    mailbox_mb: float = 16.0
    mailbox_share: float = 0.25
    rooms_per_user: int = 100
    members_per_room: int = 10_000
    rooms_per_server: int = 10_000
    sessions_per_account: int = 10


OPTIONS = {
    "registrations_per_hour": (int, "N", "names one address may register an hour (default %(default)s)"),
    "history_mb_per_day": (
        float,
        "MB",
        "text one user's messages, direct and to rooms, may add to the history a day; past it they are relayed, "
        "not kept (default %(default)s)",
    ),
    "mailbox_mb": (float, "MB", "text kept for one offline user (default %(default)s; 1000 messages at most)"),
    "mailbox_share": (
        float,
        "FRACTION",
        "the part of an offline user's mailbox one sender may fill (default %(default)s)",
    ),
    "rooms_per_user": (int, "N", "rooms one user may be a member of (default %(default)s)"),
    "members_per_room": (int, "N", "members one room may have, and invitations it may hold (default %(default)s)"),
    "rooms_per_server": (int, "N", "rooms the server holds at once (default %(default)s)"),
    "sessions_per_account": (
        int,
        "N",
        "sessions (devices) one registered user may be logged in with at once (default %(default)s)",
    ),
}


def add_arguments(group) -> None:
    add_dataclass_arguments(group, Quotas, OPTIONS)


def from_arguments(args) -> Quotas:
    return dataclass_from_arguments(Quotas, args)


MAX_TRACKED = 10_000  # keys kept before the quiet ones are forgotten


class Window:
    """Events per key in a sliding window of ``seconds``; keys quiet for a window are
    forgotten once many are tracked."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self._seconds = seconds
        self._clock = clock
        self._times: dict[Hashable, collections.deque] = {}

    def count(self, key: Hashable) -> int:
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

    def add(self, key: Hashable) -> None:
        if len(self._times) > MAX_TRACKED:
            for stale in list(self._times):
                self.count(stale)
        self._times.setdefault(key, collections.deque()).append(self._clock())

    def free_in(self, key: Hashable) -> float:
        """Seconds until key's oldest event leaves the window (0 if it has none)."""
        if not self.count(key):
            return 0.0
        return max(0.0, self._times[key][0] + self._seconds - self._clock())

    def take_back(self, key: Hashable) -> None:
        """Forget the latest event of key (it turned out not to count)."""
        times = self._times.get(key)
        if times:
            times.pop()


class DailyBytes:
    """Bytes per key since the start of the current day (UTC), up to a limit. (The relay's C
    counts a room's message in _bytes itself, the day's once this has begun it: _relay.c.)"""

    __slots__ = ("_limit", "_day", "_bytes", "_refused")

    def __init__(self, limit: int):
        self._limit = limit
        self._day = -1
        self._bytes: dict[str, int] = {}
        self._refused: set[str] = set()  # keys refused today

    def add(self, key: str, size: int) -> bool:
        """Count size bytes for key unless they would pass the limit; whether they were counted."""
        day = int(time.time() // 86_400)
        if day != self._day:
            self._day, self._bytes, self._refused = day, {}, set()
        total = self._bytes.get(key, 0) + size
        if total > self._limit:
            return False
        self._bytes[key] = total
        return True

    def first_refusal(self, key: str) -> bool:
        """Whether key's refusal (add() was False) is its first today."""
        if key in self._refused:
            return False
        self._refused.add(key)
        return True
