"""The extension's account requests, for :class:`~.rules.Rules`: registering, logging in with
a password or a session token, the messages kept while a user was away (handed out a page at
a time), passwords and history.

A mixin: it holds no state of its own; :class:`~.rules.Rules` holds the connection's.
"""

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..codec import Decoder, encode, history_entry
from ..protocol import (
    MAX_HISTORY_COUNT,
    MAX_SERVER_BODY,
    Authenticate,
    ChangePassword,
    DirectMessage,
    HistoryPage,
    HistoryRequest,
    Incoming,
    Reason,
    Register,
    Resume,
    SessionToken,
    StoredMessage,
    TokenRequest,
    is_valid_password,
    is_valid_username,
)
from .operations.logs import fields
from .presence.devices import Devices
from .presence.directory import Connection, Directory
from .replies import OK
from .storage.accounts import MOST_TOKENS, Accounts, Check
from .storage.store import StoreUnavailable

log = logging.getLogger(__name__)

STORED_PAGE = 64  # stored messages handed out at a time
KEPT_WITH_IDS = 3  # the extension version from which they come with their ids (KEPT-MESSAGE)


class AccountRules:
    if not TYPE_CHECKING:
        __slots__ = ()  # (at run time only: mypy checks assignments against Rules' slots)
    else:  # what Rules holds and does
        name: str | None
        held: list[bytes] | None
        _stored_mark: int | None
        _registered: bool
        _version: int
        _tokens: list[str] | None
        _history_key: str | None
        _devices: Devices | None
        _accounts: Accounts | None
        _directory: Directory
        _mailbox: Connection
        _peer: str

        @property
        def host(self) -> str:
            raise NotImplementedError

        def _failure(self, reason: Reason, detail: str = "") -> bytes:
            raise NotImplementedError

        def _claim(self, name: str, registered: bool = False) -> bytes | None:
            raise NotImplementedError

        def _refuse_login(self, name: str) -> bytes | None:
            raise NotImplementedError

        def log_out(self, how: str) -> bool:
            raise NotImplementedError

        def keep_rooms(self) -> None:
            raise NotImplementedError

    def keep_undelivered(self, frames: Sequence[bytes]) -> int:
        """Keep the relayed messages (0x83 frames) a registered user was sent but never took,
        for their next login; how many were kept."""
        accounts, name = self._accounts, self.name
        if not frames or accounts is None or name is None or not self._registered:
            return 0
        if self._devices is not None and self._devices.several:
            return 0  # the user's other sessions took them
        # Direct messages only: a room's are in its history, for its registered members.
        events = Decoder.for_client().receive_data(b"".join(frames))
        messages = [
            (m.sender, m.text, m.id if type(m) is DirectMessage else 0)
            for m in events
            if type(m) is Incoming or type(m) is DirectMessage
        ]
        if not messages:
            return 0
        try:
            return accounts.keep_dropped(name, messages)
        except StoreUnavailable:
            return 0

    def _authenticate(self, event: Authenticate) -> bytes:
        accounts = self._accounts
        assert accounts is not None
        name = event.name
        refused = self._refuse_login(name)
        if refused is not None:
            return refused
        if not is_valid_password(event.password):
            return self._failure(Reason.INVALID_PASSWORD)
        check = accounts.check_password(name, event.password, self.host)
        if check is not Check.RIGHT:
            log.info("password for %s (%s): %s", name, self._peer, check.value)
            return self._check_failure(check, name)
        return self._log_in_registered(name, "registered")

    def _resume(self, event: Resume) -> bytes:
        accounts = self._accounts
        assert accounts is not None
        refused = self._refuse_login(event.name)
        if refused is not None:
            return refused
        if not is_valid_password(event.token) or not accounts.token_is_for(event.name, event.token):
            log.info("session token for %s (%s): refused", event.name, self._peer)
            return self._failure(Reason.INVALID_TOKEN)
        self._keep_token(event.token)
        return self._log_in_registered(event.name, "registered, session token")

    def _log_in_registered(self, name: str, how: str) -> bytes:
        """Log in as a registered name, proven (by its password or a token)."""
        refused = self._claim(name, registered=True)
        if refused is not None:
            return refused
        self.name = name
        self._registered = True
        log.info(
            "login %s (%s, %s)",
            name,
            self._peer,
            how,
            extra=fields("login", name=name, peer=self._peer, registered=True),
        )
        # Messages kept while the user was away come first, a page at a time, each removed from
        # the store once it has been handed over (next_stored); live ones wait behind them.
        self.held = []
        return OK + self._stored_page()

    def next_stored(self) -> bytes:
        """While ``held`` is not None: once the last page of stored messages has been handed
        over, remove it from the store, and give the frames of the next page; after the last
        page, the live messages held behind them (``held`` is then None again). Nothing once a
        logout has ended the hand-out (end_catch_up_at_logout), also while this waited."""
        if self.held is None:
            return b""
        accounts, name = self._accounts, self.name
        assert accounts is not None and name is not None and self._stored_mark is not None
        try:
            accounts.remove_offline(name, self._stored_mark)
        except StoreUnavailable:
            return self._end_catch_up()  # kept: the next login hands them out (again)
        if self.held is None:
            return b""  # (logged out while the store removed the page)
        return self._stored_page()

    def _stored_page(self) -> bytes:
        accounts, name = self._accounts, self.name
        assert accounts is not None and name is not None
        try:
            mark, stored = accounts.offline_page(name, STORED_PAGE)
        except StoreUnavailable:
            return self._end_catch_up()  # they stay kept, for the next login
        if not stored:
            return self._end_catch_up()
        self._stored_mark = mark
        if self._version < KEPT_WITH_IDS:  # (STORED-MESSAGE, without the id)
            stored = [StoredMessage(m.sender, m.time_ms, m.text) for m in stored]
        return b"".join(map(encode, stored))

    def _end_catch_up(self) -> bytes:
        """The live messages held behind the stored ones, and no more holding."""
        held, self.held, self._stored_mark = self.held or [], None, None
        return b"".join(held)

    def end_catch_up_at_logout(self) -> None:
        """A logout (LOGOUT, or the connection's end) while stored messages are being handed
        out: the hand-out stops (the pages not yet handed over stay stored), and the live
        messages held behind them are kept for the next login, as any undelivered ones."""
        held, self.held, self._stored_mark = self.held, None, None
        if held:
            self.keep_undelivered(held)

    def _register(self, event: Register) -> bytes:
        accounts = self._accounts
        assert accounts is not None
        name = event.name
        if self.name not in (None, name):
            return self._failure(Reason.ALREADY_LOGGED_IN, self.name or "")
        if not is_valid_username(name):
            return self._failure(Reason.INVALID_NAME)
        if not is_valid_password(event.password):
            return self._failure(Reason.INVALID_PASSWORD)
        claimed_now = self.name is None
        if claimed_now:
            refused = self._claim(name)
            if refused is not None:
                return refused
            self.name = name
        refusal = accounts.register(name, event.password, self.host)
        if refusal is not None:
            if claimed_now:
                self.log_out("registration refused")
            return self._failure(*refusal)
        self._registered = True
        if not claimed_now:
            self.keep_rooms()
        if self._devices is not None:
            self._directory.share(name)  # (its devices may log in at other servers of a cluster now)
        log.info("registered %s (%s)", name, self._peer)
        return OK

    def _change_password(self, event: ChangePassword) -> bytes:
        accounts = self._accounts
        assert accounts is not None
        name = self.name
        if not self._registered or name is None:
            return self._failure(Reason.NOT_REGISTERED)
        if not is_valid_password(event.new):
            return self._failure(Reason.INVALID_PASSWORD)
        check = accounts.change_password(name, event.old, event.new, self.host)
        if check is not Check.RIGHT:
            return self._check_failure(check, name)
        if self._devices is not None:
            # Whoever had the old password is out: the account's other sessions end, as
            # END-SESSION ends one (the tokens went with the password).
            self._devices.end_others(self._mailbox)
        return OK

    def history_key(self) -> str:
        """What the sender's daily history quota is counted under: a registered name, or for
        an unregistered one its address (a name given up is free to take again; see
        Accounts.quota_key). Only while logged in, on a server with accounts."""
        assert self.name is not None and self._accounts is not None
        if self._registered:
            return self.name
        if self._history_key is None:
            self._history_key = self._accounts.quota_key(self.name, self.host)
        return self._history_key

    def _session_token(self, event: TokenRequest) -> bytes:
        accounts, name = self._accounts, self.name
        assert accounts is not None
        if not self._registered or name is None:
            return self._failure(Reason.NOT_REGISTERED)
        token = accounts.issue_token(name)
        self._keep_token(token)
        return encode(SessionToken(token))

    def _keep_token(self, token: str) -> None:
        """Note a token issued or used here, for LOGOUT to revoke (only the MOST_TOKENS
        newest: the account's older ones are revoked already)."""
        self._tokens = [*(self._tokens or ())[1 - MOST_TOKENS :], token]

    def revoke_tokens(self) -> None:
        """Revoke the tokens this connection was issued or resumed with (at its LOGOUT, or as
        another of the user's sessions ends it)."""
        accounts, tokens, self._tokens = self._accounts, self._tokens or (), None
        for token in tokens:
            assert accounts is not None
            accounts.revoke_token(token)

    def _check_failure(self, check: Check, name: str) -> bytes:
        """The FAILURE for a password check that did not go right."""
        if check is Check.TOO_MANY:
            assert self._accounts is not None
            return self._failure(Reason.TOO_MANY_TRIES, str(self._accounts.retry_after(name, self.host)))
        return self._failure(Reason.BUSY if check is Check.BUSY else Reason.WRONG_PASSWORD)

    def _history(self, event: HistoryRequest) -> bytes:
        accounts = self._accounts
        assert accounts is not None
        name = self.name
        if not self._registered or name is None:
            return self._failure(Reason.NOT_REGISTERED)
        if not 1 <= event.count <= MAX_HISTORY_COUNT:
            return self._failure(Reason.INVALID_COUNT)
        entries = accounts.history(name, event.peer, event.count, event.before)
        # The newest entries that fit in one frame; the client asks again for older ones.
        room = MAX_SERVER_BODY - len(encode(HistoryPage(event.peer, ())))
        kept = []
        for entry in reversed(entries):
            room -= len(history_entry(entry))
            if room < 0:
                break
            kept.append(entry)
        return encode(HistoryPage(event.peer, tuple(reversed(kept))))
