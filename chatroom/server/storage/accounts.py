"""Registered names and what the server remembers for them, as the sessions need it.

:class:`Accounts` puts the rules on top of a :class:`~.store.Store`: passwords hashed with
argon2 in threads of their own (a hash takes about 25 ms and 19 MiB: on the hub it would stall
every connection), password attempts throttled (:mod:`.throttle`), names that look like a
registered one refused, offline messages and history kept for registered users only.
"""

import enum
import hashlib
import logging
import secrets
from collections.abc import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from gevent.threadpool import ThreadPool

from ...protocol import HistoryEntry, Reason, StoredMessage
from ..message_ids import next_id
from ..presence.skeleton import skeleton
from .quotas import DailyBytes, Quotas, Window
from .store import Store, now_ms
from .throttle import PasswordThrottle, Verdict

log = logging.getLogger(__name__)
DEFAULT_QUOTAS = Quotas()

# OWASP's recommended minimum for argon2id: 19 MiB, 2 passes, 1 lane.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
HASHING_THREADS = 2  # bounds the memory hashing takes: 2 x 19 MiB
TOKEN_LIFETIME_MS = 7 * 86_400_000
TOKEN_BYTES = 24  # 192 random bits
# The valid tokens an account may have: a new one past it revokes the oldest (a browser asks
# for one at each login and a reload revokes nothing, so they gather; unbounded, a client
# asking in a loop would fill the store).
MOST_TOKENS = 100


class Check(enum.Enum):
    """How a password check went."""

    RIGHT = "right"
    WRONG = "wrong password"
    TOO_MANY = "too many tries"
    BUSY = "busy"


class Accounts:
    def __init__(
        self,
        store: Store,
        hasher: PasswordHasher = HASHER,
        throttle: PasswordThrottle | None = None,
        quotas: Quotas = DEFAULT_QUOTAS,
        exempt: Callable[[str], bool] = lambda address: False,
    ):
        """``hasher``: argon2's parameters (tests use cheaper ones); ``exempt(address)``:
        whether the per-address quotas spare an address."""
        self.store = store
        self._hasher = hasher
        self.registered_names = store.registered_names  # for routing: see Store
        self._hashing = ThreadPool(HASHING_THREADS)
        self._throttle = throttle or PasswordThrottle()
        self.quotas = self._quotas = quotas
        self._exempt = exempt
        self._registrations = Window(3600.0)  # by address
        self._history_bytes = DailyBytes(int(quotas.history_mb_per_day * 1_000_000))  # by sender
        self._skeletons: dict[str, str] = {}  # skeleton -> the registered name that has it
        self._indexed = 0  # how many registered names _skeletons has seen

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

    def look_alike(self, name: str) -> str | None:
        """The registered name that name is confusable with (not name itself), if any."""
        names = self.registered_names
        if len(names) != self._indexed:  # (sized: both stores keep a set or a dict)
            self._skeletons = {skeleton(registered): registered for registered in names}
            self._indexed = len(names)
        other = self._skeletons.get(skeleton(name))
        return other if other is not None and other != name else None

    # --- Passwords ----------------------------------------------------------------------

    def register(self, name: str, password: str, address: str) -> "tuple[Reason, str] | None":
        """Make name an account (from address, which it then trusts); else why it cannot be
        (a reason and its detail)."""
        if self.requires_password(name):
            return Reason.NAME_REGISTERED, ""
        look_alike = self.look_alike(name)
        if look_alike is not None:
            return Reason.LOOKS_LIKE, look_alike
        counted = not self._exempt(address)
        if counted and self._registrations.count(address) >= self._quotas.registrations_per_hour:
            log.info("registration of %s from %s refused: --registrations-per-hour", name, address)
            return Reason.REGISTRATION_LIMIT, ""
        password_hash = self._hashing.spawn(self._hasher.hash, password).get()
        if not self.store.create_account(name, password_hash):
            return Reason.NAME_REGISTERED, ""  # by someone else, meanwhile
        if counted:
            self._registrations.add(address)
        self._skeletons[skeleton(name)] = name
        self._throttle.trust(name, address)
        return None

    def check_password(self, name: str, password: str, address: str) -> Check:
        """Whether password is name's, counted and paced by the throttle."""
        verdict = self._throttle.begin(name, address)
        if verdict is not Verdict.GO:
            return Check.TOO_MANY if verdict is Verdict.TOO_MANY else Check.BUSY
        right = False
        try:
            password_hash = self.store.password_hash(name)
            right = password_hash is not None and self._hashing.spawn(self._verifies, password_hash, password).get()
        finally:
            self._throttle.end(name, address, right)
        return Check.RIGHT if right else Check.WRONG

    def retry_after(self, name: str, address: str) -> int:
        """After Check.TOO_MANY: the seconds until address may try name's password again."""
        return self._throttle.retry_after(name, address)

    def change_password(self, name: str, old: str, new: str, address: str) -> Check:
        """A new password; every session token of name is revoked with the old one."""
        check = self.check_password(name, old, address)
        if check is Check.RIGHT:
            self.store.set_password_hash(name, self._hashing.spawn(self._hasher.hash, new).get())
            self.store.revoke_tokens(name)
        return check

    # --- Session tokens -------------------------------------------------------------------

    def issue_token(self, name: str) -> str:
        """A new session token for name: random, kept only hashed, valid TOKEN_LIFETIME_MS;
        the account's oldest goes past MOST_TOKENS."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self.store.add_token(_token_hash(token), name, now_ms() + TOKEN_LIFETIME_MS, MOST_TOKENS)
        return token

    def token_is_for(self, name: str, token: str) -> bool:
        return self.store.token_owner(_token_hash(token)) == name

    def revoke_token(self, token: str) -> None:
        self.store.revoke_token(_token_hash(token))

    # --- Memory -------------------------------------------------------------------------

    def keep_offline(self, recipient: str, sender: str, text: str) -> tuple[int, int] | None:
        """Keep a message for an offline registered user, and in the history: its id and
        time, or None if the recipient's mailbox had no room for it."""
        message_id, time_ms = next_id()
        if not self.store.keep_offline(recipient, sender, text, time_ms, message_id):
            return None
        self.store.record(sender, recipient, text, time_ms, message_id)
        return message_id, time_ms

    def keep_dropped(self, recipient: str, messages: list[tuple[str, str, int]]) -> int:
        """Keep what a registered user was sent but never took (not recorded again: the
        history has it); how many."""
        return self.store.keep_dropped(recipient, messages, now_ms())

    def offline_page(self, name: str, limit: int) -> tuple[int, list[StoredMessage]]:
        return self.store.offline_page(name, limit)

    def remove_offline(self, name: str, mark: int) -> None:
        self.store.remove_offline(name, mark)

    def record(self, sender: str, recipient: str, text: str, message_id: int, time_ms: int, quota_key: str) -> None:
        """Add a message (with the id it was relayed with) to the history, within the daily
        quota counted under quota_key (see quota_key; past it the message is relayed but not
        kept, and the log says so once a day)."""
        if self._within_quota(quota_key, text):
            self.store.record(sender, recipient, text, time_ms, message_id)

    def record_room(self, room: str, message_id: int, sender: str, text: str, time_ms: int, quota_key: str) -> None:
        """Add a room's message to its history, within the daily quota (as record)."""
        if self._within_quota(quota_key, text):
            self.store.record_room(room, message_id, sender, text, time_ms)

    def quota_key(self, name: str, address: str) -> str:
        """What an unregistered sender's history is counted under: its address (else a new
        name after each logout would bring a new quota), or its name from an address the
        per-address quotas spare (loopback, unless --limit-loopback). A registered sender's
        is its name. (No name has a space in it.)"""
        return name if self._exempt(address) else f"address {address}"

    def _within_quota(self, key: str, text: str) -> bool:
        """Whether text is within key's daily history quota (counted if it is): a sender's
        direct and room messages share it."""
        if self._history_bytes.add(key, len(text)):
            return True
        if self._history_bytes.first_refusal(key):
            log.warning("%s has used its history quota for today (--history-mb-per-day)", key)
        return False

    def history(self, name: str, peer: str, count: int, before: int) -> list[HistoryEntry]:
        return self.store.history(name, peer, count, before)

    def _verifies(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def _token_hash(token: str) -> str:
    # A token is 192 random bits: a fast hash is enough to make a stolen table useless.
    return hashlib.sha256(token.encode()).hexdigest()
