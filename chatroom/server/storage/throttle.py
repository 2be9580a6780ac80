"""Who may have a password checked, and when: guessing is slowed, the owner is never locked out.

An attempt is counted *before* its password is hashed, so no burst of concurrent attempts
gets past the limits: at most PER_PAIR attempts a minute for one name from one address, and
PER_ADDRESS from one address in all (failures and attempts under way; a success is not
counted). Hashes for one name are bounded too, HASHES_PER_NAME a minute, whoever asks: past
that an attempt waits its turn (up to MAX_WAIT) instead of failing, so that guessing from many
addresses slows the owner down but does not lock them out; and an address the name logged in
from lately is trusted: it never waits.
"""

import collections
import enum
import math
import time
from collections.abc import Callable

import gevent

from .quotas import MAX_TRACKED, Window

WINDOW = 60.0  # seconds the counts cover
PER_PAIR = 3
PER_ADDRESS = 10
HASHES_PER_NAME = 10
MAX_WAIT = 5.0
TRUSTED_PER_NAME = 8  # addresses remembered per name


class Verdict(enum.Enum):
    GO = "go"  # hash it now
    TOO_MANY = "too many tries"  # from this address, for a minute
    BUSY = "busy"  # too many guesses at this name: its turn did not come in time


class PasswordThrottle:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = gevent.sleep,
    ):
        self._clock = clock
        self._sleep = sleep
        self._attempts = Window(WINDOW, clock)  # by ("pair", name, address) and ("address", address)
        self._hashes: dict[str, collections.deque] = {}  # name -> when its last hashes began
        self._trusted: dict[str, list[str]] = {}  # name -> addresses it logged in from lately

    def begin(self, name: str, address: str) -> Verdict:
        """Count an attempt; GO once it may be hashed (after waiting its turn, if need be)."""
        pair, by_address = ("pair", name, address), ("address", address)
        if self._attempts.count(pair) >= PER_PAIR or self._attempts.count(by_address) >= PER_ADDRESS:
            return Verdict.TOO_MANY
        for key in (pair, by_address):
            self._attempts.add(key)
        if address in self._trusted.get(name, ()) or self._wait_for_a_hash(name):
            return Verdict.GO
        return Verdict.BUSY

    def retry_after(self, name: str, address: str) -> int:
        """After TOO_MANY: whole seconds until an attempt from address at name is counted again."""
        waits = [
            self._attempts.free_in(key) if self._attempts.count(key) >= limit else 0.0
            for key, limit in ((("pair", name, address), PER_PAIR), (("address", address), PER_ADDRESS))
        ]
        return math.ceil(max(waits))

    def end(self, name: str, address: str, succeeded: bool) -> None:
        """The attempt's outcome: a success is not counted against anyone, and trusts its address."""
        if not succeeded:
            self._forget_stale()
            return
        for key in (("pair", name, address), ("address", address)):
            self._attempts.take_back(key)
        self.trust(name, address)

    def trust(self, name: str, address: str) -> None:
        """Address is name's own (it registered or logged in from there): it never waits."""
        trusted = [address, *(other for other in self._trusted.get(name, ()) if other != address)]
        self._trusted[name] = trusted[:TRUSTED_PER_NAME]

    def _wait_for_a_hash(self, name: str) -> bool:
        """Take one of name's hashes for this minute, waiting (up to MAX_WAIT) for one to free."""
        deadline = self._clock() + MAX_WAIT
        hashes = self._hashes.setdefault(name, collections.deque())
        while True:
            now = self._clock()
            while hashes and hashes[0] <= now - WINDOW:
                hashes.popleft()
            if len(hashes) < HASHES_PER_NAME:
                hashes.append(now)
                return True
            free_at = hashes[0] + WINDOW
            if free_at > deadline:
                return False
            self._sleep(free_at - now)

    def _forget_stale(self) -> None:
        if len(self._hashes) > MAX_TRACKED:
            horizon = self._clock() - WINDOW
            for name in [name for name, times in self._hashes.items() if not times or times[-1] <= horizon]:
                del self._hashes[name]
