"""Registered names and what the server remembers for them, as the sessions need it.

:class:`Accounts` puts the rules on top of a :class:`~.store.Store`: passwords hashed with
argon2 in threads of their own (a hash takes about 25 ms and 19 MiB: on the hub it would stall
every connection), failed password attempts throttled per name and per address, offline
messages and history kept for registered users only.
"""

import collections
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from gevent.threadpool import ThreadPool

from ...protocol import HistoryEntry, StoredMessage
from .store import Store, now_ms

# OWASP's recommended minimum for argon2id: 19 MiB, 2 passes, 1 lane.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
HASHING_THREADS = 2  # bounds the memory hashing takes: 2 x 19 MiB
MAX_FAILURES = 3  # failed password attempts...
FAILURE_WINDOW = 60.0  # ...per this many seconds, per name and per address
MAX_TRACKED = 10_000  # names and addresses with failures kept before the stale ones go


class Accounts:
    def __init__(self, store: Store, hasher: PasswordHasher = HASHER):
        """``hasher``: argon2's parameters (tests use cheaper ones)."""
        self.store = store
        self._hasher = hasher
        self.registered_names = store.registered_names  # for routing: see Store
        self._hashing = ThreadPool(HASHING_THREADS)
        self._failures: dict[tuple[str, str], collections.deque] = {}

    def start(self) -> None:
        self.store.start()

    def stop(self) -> None:
        self.store.stop()
        self._hashing.kill()

    def healthy(self) -> bool:
        return self.store.healthy()

    def requires_password(self, name: str) -> bool:
        """Authoritative, for logging in."""
        return self.store.password_hash(name) is not None

    # --- Passwords ----------------------------------------------------------------------

    def register(self, name: str, password: str) -> bool:
        if self.requires_password(name):
            return False
        password_hash = self._hashing.spawn(self._hasher.hash, password).get()
        return self.store.create_account(name, password_hash)

    def check_password(self, name: str, password: str, address: str) -> bool:
        """Whether password is name's; False without hashing once either the name or the
        address has failed MAX_FAILURES times in the last FAILURE_WINDOW seconds."""
        keys = (("name", name), ("address", address))
        if any(self._recent_failures(key) >= MAX_FAILURES for key in keys):
            return False
        password_hash = self.store.password_hash(name)
        if password_hash is not None and self._hashing.spawn(self._verifies, password_hash, password).get():
            return True
        if len(self._failures) > MAX_TRACKED:
            for key in list(self._failures):  # forget the names and addresses quiet for a minute
                self._recent_failures(key)
        for key in keys:
            self._failures.setdefault(key, collections.deque()).append(time.monotonic())
        return False

    def change_password(self, name: str, old: str, new: str, address: str) -> bool:
        if not self.check_password(name, old, address):
            return False
        self.store.set_password_hash(name, self._hashing.spawn(self._hasher.hash, new).get())
        return True

    def _recent_failures(self, key) -> int:
        times = self._failures.get(key)
        if times is None:
            return 0
        horizon = time.monotonic() - FAILURE_WINDOW
        while times and times[0] < horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)

    # --- Memory -------------------------------------------------------------------------

    def keep_offline(self, recipient: str, sender: str, text: str, record: bool = True) -> bool:
        """Keep a message for an offline registered user (and, unless it was recorded when
        first sent, in the history)."""
        time_ms = now_ms()
        if not self.store.keep_offline(recipient, sender, text, time_ms):
            return False
        if record:
            self.store.record(sender, recipient, text, time_ms)
        return True

    def take_offline(self, name: str) -> list[StoredMessage]:
        return self.store.take_offline(name)

    def record(self, sender: str, recipient: str, text: str) -> None:
        self.store.record(sender, recipient, text, now_ms())

    def history(self, name: str, peer: str, count: int, before: int) -> list[HistoryEntry]:
        return self.store.history(name, peer, count, before)

    def _verifies(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
