"""The chat rules of one connection: a decoded request in, the bytes of its reply out.

No I/O here. A :class:`Rules` holds what the protocol remembers of one connection (the name
logged in, whether it is registered and proven by its password, whether the client said
HELLO, live messages held back behind stored ones) and answers every request over the
:class:`~.presence.directory.Directory` and :class:`~.storage.accounts.Accounts`. A message
for a user on another node is answered with a :class:`~.pending.Pending` reply, settled once
that node has it. The :class:`~.connection.session.Session` reads, batches, times and
delivers; tests drive a Rules directly, without a socket (tests/test_rules.py).
"""

import logging
from collections.abc import Callable
from typing import Any

from ..codec import direct_message_frame, encode, incoming_frame
from ..device_frames import DEVICES_VERSION
from ..protocol import (
    EXTENSION_VERSION,
    MAX_FRAME,
    MAX_TEXT_CHARS,
    Authenticate,
    ChangePassword,
    FrameTooLarge,
    Hello,
    HistoryRequest,
    ListUsers,
    Login,
    Logout,
    Malformed,
    Reason,
    Register,
    Resume,
    SendTo,
    TokenRequest,
    UserList,
    Watch,
    is_valid_username,
)
from ..room_frames import ROOM_PREFIX, ROOMS_VERSION
from .account_rules import AccountRules
from .addresses import counted_address
from .device_rules import DEVICE_ANSWERS, DeviceRules
from .message_ids import next_id
from .operations.counts import COUNTS
from .operations.logs import fields
from .pending import Pending
from .presence.devices import Devices
from .presence.directory import ENDED, Connection, Directory, DirectoryUnavailable, Mailbox, RemoteRecipient
from .replies import (
    FAILURE,
    MALFORMED,
    OK,
    REASONS_VERSION,
    REGISTERED,
    REQUEST_NAMES,
    SERVER_VERSION,
    STORED,
    failure,
)
from .rooms.registry import Rooms
from .rooms.room_rules import ROOM_ANSWERS, RoomRules
from .rooms.shared import SharedRooms
from .storage.accounts import Accounts
from .storage.store import StoreUnavailable

log = logging.getLogger(__name__)


class Rules(AccountRules, RoomRules, DeviceRules):
    """The protocol's state for one connection, and the answer to each of its requests.

    ``mailbox`` is where messages for this connection's user are delivered (its session): the
    directory is told of it at login. ``accounts`` is None on a server that keeps nothing:
    the extension's requests then fail.
    """

    __slots__ = (
        "name",
        "held",
        "_stored_mark",
        "_registered",
        "_version",
        "_tokens",
        "_history_key",
        "_rooms",
        "_devices",
        "_mailbox",
        "_directory",
        "_accounts",
        "_peer",
        "sent",
    )

    def __init__(
        self,
        mailbox: Connection,
        directory: Directory,
        accounts: Accounts | None,
        peer: str,
        rooms: Rooms | SharedRooms | None = None,
    ):
        self.name: str | None = None  # logged in as
        # While stored messages are handed out at login (page by page: see next_stored): the
        # live ones, held back to follow them. The session delivers into it when it is not None.
        self.held: list[bytes] | None = None
        self._stored_mark: int | None = None  # the page of stored messages being handed out
        self._registered = False  # logged in under a registered name, with its password
        self._version = 0  # the extension version the client said HELLO with (0: none, the seed protocol)
        self._rooms = rooms  # None: this server has no rooms (Rooms, or a cluster's SharedRooms)
        self._tokens: list[str] | None = None  # session tokens issued or used here: LOGOUT revokes them
        self._history_key: str | None = None  # an unregistered sender's, once asked (see history_key)
        self._devices: Devices | None = None  # the user's sessions, for a client of version 4
        self._mailbox = mailbox
        self._directory = directory
        self._accounts = accounts
        self._peer = peer
        self.sent: tuple[int, int] | None = None  # (see send_text)

    @property
    def host(self) -> str:
        """The client's address as it is counted (addresses.py): failed passwords, registrations
        and an unregistered sender's history are counted per address."""
        return counted_address(self._peer.rsplit(":", 1)[0])

    def answer(self, event) -> "bytes | Pending":
        """The reply to one decoded frame: a ready frame, or a Pending one."""
        kind = type(event)
        try:
            if kind is SendTo:
                return self._send_to(event.recipient, event.text, event.raw)
            COUNTS.count(COUNTS.frames_by_type, REQUEST_NAMES.get(kind, "malformed"))
            if kind is ListUsers:
                return self._user_list()
            if kind is Login:
                return self._log_in(event.name)
            if kind is Logout:
                self.revoke_tokens()
                return OK if self.log_out("logged out") else self._failure(Reason.NOT_LOGGED_IN)
            if kind is Hello:
                self._version = min(event.version, EXTENSION_VERSION)
                self._mailbox.wants_ids = self._version >= ROOMS_VERSION  # (direct messages' ids: version 3)
                # A client newer than this server learns the version it gets; one that asks for
                # a version the server has is answered OK, as ever.
                return OK if event.version <= EXTENSION_VERSION else SERVER_VERSION
            if kind is Watch and self._version:
                return self._watch(event.on)
            if self._version >= ROOMS_VERSION and (kind in ROOM_ANSWERS or _is_room_history(event)):
                if self._rooms is None:
                    return self._failure(Reason.UNAVAILABLE, "no rooms on this server")
                if kind is HistoryRequest:
                    return self._room_history(event.peer, event.count, event.before)
                return ROOM_ANSWERS[kind](self, event)
            if kind in _EXTENSION_ANSWERS and self._version:
                if self._accounts is None:
                    return self._failure(Reason.NO_ACCOUNTS)
                return _EXTENSION_ANSWERS[kind](self, event)
            if kind in DEVICE_ANSWERS and self._version >= DEVICES_VERSION:
                return DEVICE_ANSWERS[kind](self, event)
        except (DirectoryUnavailable, StoreUnavailable):
            return self._failure(Reason.UNAVAILABLE)
        assert (
            kind in (Malformed, FrameTooLarge, Watch)
            or kind in _EXTENSION_ANSWERS
            or kind in ROOM_ANSWERS
            or kind in DEVICE_ANSWERS
        ), event
        return MALFORMED

    def _user_list(self) -> bytes:
        """LIST: every name online; where they are too many for one frame (a cluster's, or
        long names), FAILURE: the seed protocol's "the list cannot be produced"."""
        self.hold_pushes()
        frame = encode(UserList(tuple(self._directory.names())))
        return frame if len(frame) <= MAX_FRAME else self._failure(Reason.UNAVAILABLE)

    def send_text(self, recipient: str, text: str, raw: bytes = b"", with_id: bool = False) -> "bytes | Pending":
        """SENDTO for a port that reads requests of its own (IRC's PRIVMSG): the reply that
        answer gives a SendTo, without one made for it. ``raw``: the text in UTF-8, if at hand.
        ``with_id``: the message, once delivered, leaves its (id, time) in ``sent`` (for an IRC
        client's echo of it; one for another node's user does once its Pending is settled),
        else None there."""
        self.sent = None
        try:
            return self._send_to(recipient, text, raw, with_id)
        except (DirectoryUnavailable, StoreUnavailable):
            return self._failure(Reason.UNAVAILABLE)

    @property
    def is_registered(self) -> bool:
        """Logged in under a registered name (proven)."""
        return self._registered

    def registered_name(self, name: str) -> bool:
        """Whether name is a registered user's."""
        return self._accounts is not None and name in self._accounts.registered_names

    def away_message(self, name: str) -> str | None:
        """Name's away message while they are away (None: not away, or not known now)."""
        return self._directory.away_of(name)

    def _failure(self, reason: Reason, detail: str = "") -> bytes:
        """FAILURE, with its reason for a client that learns it."""
        return failure(reason, detail) if self._version >= REASONS_VERSION else FAILURE

    def _claim(self, name: str, registered: bool = False) -> bytes | None:
        """Log the connection in as name (``registered``: proven by its password or a token):
        None once it is, else the FAILURE saying why not. A client of version 4 logs in
        through its user's Devices: a registered user on already gets one more session."""
        mailbox: Mailbox = self._mailbox
        if self._version >= DEVICES_VERSION:
            held = self._directory.here(name) if registered else None
            if type(held) is Devices:
                return self._add_device(held)
            mailbox = Devices(self._mailbox)
        if self._directory.claim(name, mailbox, shared=registered and type(mailbox) is Devices):
            if type(mailbox) is Devices:
                if mailbox.on_other_nodes and mailbox.count() > self._session_limit():
                    self._directory.release(name, mailbox)  # (the first here, with enough elsewhere)
                    return self._failure(Reason.TOO_MANY_SESSIONS, str(self._session_limit()))
                self._devices = mailbox
            if self._rooms is not None:
                self._rooms.logged_in(name, registered)
            return None
        if self._version < REASONS_VERSION:
            return FAILURE
        holder = self._directory.holder(name)
        if holder is None:
            return self._failure(Reason.UNAVAILABLE)  # a cluster registering its users again
        return self._failure(Reason.NAME_IN_USE) if holder == name else self._failure(Reason.LOOKS_LIKE, holder)

    # --- The seed protocol ----------------------------------------------------------------

    def _send_to(self, recipient: str, text: str, raw: bytes = b"", with_id: bool = False) -> "bytes | Pending":
        """``raw``: the text as it came (UTF-8), if it came in a frame."""
        sender = self.name
        if sender is None:
            return self._failure(Reason.NOT_LOGGED_IN)
        if not 1 <= len(text) <= MAX_TEXT_CHARS:  # (a text: 1 to MAX_TEXT_CHARS code points)
            return self._failure(Reason.INVALID_TEXT)
        devices = self._devices
        if devices is not None and devices.away:  # (a client of version 4: presence)
            self._set_away(None)
        encoded = raw or text.encode()  # (what every relayed frame below carries)
        # No need to validate the recipient's name: only valid names are ever logged in,
        # so an invalid one is simply not found.
        found = self._directory.find(recipient)
        key = None  # (what the history counts it under, if it keeps it: read before anything waits)
        if found is not None:  # someone, here or on another node: a contact
            if devices is not None:
                devices.contacts.add(recipient)
            accounts = self._accounts  # (kept where the sender's or the recipient's name is registered)
            if accounts is not None and (self._registered or recipient in accounts.registered_names):
                key = self.history_key()
        if found is None or type(found) is RemoteRecipient:
            # (Not a user here: the only place on the relay path where a room is looked for.)
            if recipient[:1] == ROOM_PREFIX:
                return self._to_room(recipient, text, encoded)
            if found is None:
                return self._keep_for_later(sender, recipient, text)
            # On another node: answered once it is there. It crosses with its id; that node
            # hands an older client an INCOMING instead.
            message_id, time_ms = next_id()
            relayed = found.hand_over(direct_message_frame(sender, message_id, time_ms, encoded))
            # (Recorded as sent: the session answers what follows, a LOGOUT say, meanwhile.)
            return Pending(self, sender, recipient, text, relayed, message_id, time_ms, key)
        # An id only where it is needed: for a client of version 3, or for the history.
        if found.wants_ids:
            message_id, time_ms = next_id()
            frame = direct_message_frame(sender, message_id, time_ms, encoded)
        else:
            if key is not None or with_id:
                message_id, time_ms = next_id()
            frame = incoming_frame(sender, encoded)
        if not (found.deliver_from(sender, frame) if type(found) is Devices else found.deliver(frame)):
            return self._keep_for_later(sender, recipient, text, Reason.NOT_DELIVERED)
        if with_id:
            self.sent = (message_id, time_ms)
        if key is not None:
            accounts.record(sender, recipient, text, message_id, time_ms, key)  # type: ignore[union-attr]
            if devices is not None:
                self._show_on_other_devices(recipient, text, message_id, time_ms)
        return OK

    def _to_room(self, room: str, text: str, encoded: bytes) -> bytes:
        """SENDTO a #room: a room's message for a client of version 3; for anyone else, like a
        message to nobody (no user's name begins with #). ``encoded``: the text in UTF-8."""
        if self._version >= ROOMS_VERSION and self._rooms is not None:
            return self._room_message(room, text, encoded)
        return self._failure(Reason.NOT_ONLINE)

    def _delivered(self, sender, recipient, text, message_id, time_ms, history_key: str | None) -> None:
        """A message Pending was for is there: recorded (under history_key, None: not), and its
        (id, time) left in ``sent`` (see send_text)."""
        self.sent = (message_id, time_ms)
        if history_key is not None and self._accounts is not None:
            self._accounts.record(sender, recipient, text, message_id, time_ms, history_key)
        self._show_on_other_devices(recipient, text, message_id, time_ms)

    def _keep_for_later(self, sender: str, recipient: str, text: str, otherwise=Reason.NOT_ONLINE) -> bytes:
        """For a client that said HELLO, a message to a registered user who is offline is
        kept (STORED); otherwise, as in the seed protocol, the send fails (``otherwise``: why)."""
        accounts = self._accounts
        if not self._version or accounts is None or recipient not in accounts.registered_names:
            return self._failure(otherwise)
        kept = accounts.keep_offline(recipient, sender, text)
        if kept is None:
            return self._failure(Reason.MAILBOX_FULL)
        if self._devices is not None:
            self._devices.contacts.add(recipient)
        self._show_on_other_devices(recipient, text, *kept)
        return STORED

    def _log_in(self, name: str) -> bytes:
        refused = self._refuse_login(name)
        if refused is not None:
            return refused
        accounts = self._accounts
        if accounts is not None:
            if accounts.requires_password(name):
                return REGISTERED if self._version else FAILURE  # AUTHENTICATE, with the password
            look_alike = accounts.look_alike(name)
            if look_alike is not None:  # it would pass for a registered user, online or not
                return self._failure(Reason.LOOKS_LIKE, look_alike)
        refused = self._claim(name)
        if refused is not None:
            return refused
        self.name = name
        log.info("login %s (%s)", name, self._peer, extra=fields("login", name=name, peer=self._peer))
        return OK

    def _refuse_login(self, name: str) -> bytes | None:
        """The FAILURE for logging in as name on this connection, if it cannot be tried."""
        if self.name is not None:
            return self._failure(Reason.ALREADY_LOGGED_IN, self.name)
        if not is_valid_username(name):
            return self._failure(Reason.INVALID_NAME)
        return None

    def log_out(self, how: str) -> bool:
        """Give the name up (``how``: for the log); False if not logged in."""
        if self.name is None:
            return False
        self.end_catch_up_at_logout()
        name, self._history_key = self.name, None
        devices, self._devices = self._devices, None
        if devices is not None and not devices.remove(self._mailbox):
            # The user is still on from another device: only this session ends.
            self.name, self._registered = None, False
            log.info("logout %s (%s, %s; still on from another device)", name, self._peer, how)
            return True
        try:
            # (An unregistered member leaves them; a registered one stays.)
            self.leave_rooms("disconnected" if how == "disconnected" else "logged out")
        except DirectoryUnavailable:
            # The name is released all the same, or it would stay taken.
            log.warning("logout %s: its rooms could not be told (the directory is unavailable)", name)
        self.name = None
        if self._rooms is not None:
            self._rooms.logged_out(name)
        self._registered = False
        try:
            self._directory.release(name, self._mailbox if devices is None else devices)
        except DirectoryUnavailable:
            pass  # the shared directory tells Redis once it is back
        log.info(
            "logout %s (%s, %s)", name, self._peer, how, extra=fields("logout", name=name, peer=self._peer, how=how)
        )
        return True

    def _watch(self, on: bool) -> bytes:
        presence = self._directory.presence
        if not on:
            presence.unwatch(self._mailbox)
            return OK
        return OK + presence.watch(self._mailbox, self if self._version >= DEVICES_VERSION else None)

    def hold_pushes(self) -> None:
        """See Connection.hold_pushes: for a reply made from a snapshot (here, and in the IRC port's answers)."""
        self._mailbox.hold_pushes()

    def closed(self) -> None:
        """The connection has ended (after log_out): it watches nothing more, and these rules let
        go of its session (the two refer to each other: else freed at the collector's next full round)."""
        self._directory.presence.unwatch(self._mailbox)
        self._mailbox = ENDED


_EXTENSION_ANSWERS: dict[type, Callable[[Any, Any], bytes]] = {
    Authenticate: AccountRules._authenticate,
    Register: AccountRules._register,
    ChangePassword: AccountRules._change_password,
    HistoryRequest: AccountRules._history,
    TokenRequest: AccountRules._session_token,
    Resume: AccountRules._resume,
}


def _is_room_history(event) -> bool:
    return type(event) is HistoryRequest and event.peer[:1] == ROOM_PREFIX
