"""The extension's device requests (version 4), for :class:`~.rules.Rules`: one's sessions
(listed, one ended), read markers (moved forward, shown at once on one's other sessions), and
what is unread; and what one session sends, shown on the others.

A mixin: it holds no state of its own; :class:`~.rules.Rules` holds the connection's.
"""

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..codec import encode
from ..device_frames import (
    MAX_AWAY_CHARS,
    MOST_MARKERS,
    Away,
    EndSession,
    Mark,
    Marked,
    OwnMessage,
    SessionList,
    Sessions,
    Unread,
    UnreadCounts,
    UnreadEntry,
    fitting_in_a_frame,
)
from ..protocol import Reason, is_one_line, is_valid_username
from ..room_frames import ROOM_PREFIX, is_room_name
from .presence.devices import Devices
from .replies import OK

log = logging.getLogger(__name__)

COMPANY_LIFETIME = 5.0  # seconds the people in one's rooms are taken as known, for presence


class DeviceRules:
    if not TYPE_CHECKING:
        __slots__ = ()  # (at run time only: mypy checks assignments against Rules' slots)
    else:  # what Rules holds and does
        from .presence.directory import Connection, Directory, Mailbox
        from .rooms.registry import Rooms
        from .rooms.shared import SharedRooms
        from .storage.accounts import Accounts

        name: str | None
        _registered: bool
        _devices: Devices | None
        _mailbox: Connection
        _directory: Directory
        _accounts: Accounts | None
        _rooms: Rooms | SharedRooms | None
        _peer: str

        def _failure(self, reason: Reason, detail: str = "") -> bytes:
            raise NotImplementedError

    def _session_limit(self) -> int:
        assert self._accounts is not None  # (a registered user's)
        return self._accounts.quotas.sessions_per_account

    def _add_device(self, devices: Devices) -> bytes | None:
        """Log the connection in as one more of a registered user's sessions, if they may have
        one more: None once it is, else the FAILURE saying why not."""
        if devices.count() >= self._session_limit():
            return self._failure(Reason.TOO_MANY_SESSIONS, str(self._session_limit()))
        devices.add(self._mailbox)
        self._devices = devices
        return None

    def _sessions(self, _event) -> bytes:
        if self._devices is None:
            return self._failure(Reason.NOT_LOGGED_IN)
        return encode(SessionList(self._devices.listing(self._mailbox)))

    def _end_session(self, event: EndSession) -> bytes:
        if self._devices is None:
            return self._failure(Reason.NOT_LOGGED_IN)
        if not self._devices.end(event.number):
            return self._failure(Reason.NO_SUCH_SESSION)
        log.info("%s ended session %d of %s", self._peer, event.number, self.name)
        return OK

    def _mark(self, event: Mark) -> bytes:
        name, accounts = self.name, self._accounts
        if name is None or not self._registered or accounts is None:
            return self._failure(Reason.NOT_REGISTERED)
        conversation = event.conversation
        if not (is_room_name if conversation[:1] == ROOM_PREFIX else is_valid_username)(conversation):
            return self._failure(Reason.INVALID_NAME)
        marker = accounts.store.set_marker(name, conversation, event.id)
        if marker is None:
            return self._failure(Reason.TOO_MANY_MARKERS, str(MOST_MARKERS))
        if self._devices is not None and self._devices.several:
            self._devices.to_others(self._mailbox, encode(Marked(conversation, marker)))
        return OK

    def _unread(self, _event) -> bytes:
        name, accounts = self.name, self._accounts
        if name is None or not self._registered or accounts is None:
            return self._failure(Reason.NOT_REGISTERED)
        rooms = sorted(self._rooms.rooms_of(name)) if self._rooms is not None else []
        unread = accounts.store.unread(name, rooms)
        return encode(UnreadCounts(fitting_in_a_frame([UnreadEntry(*entry) for entry in unread])))

    def _away(self, event: Away) -> bytes:
        name = self.name
        if name is None or self._devices is None:
            return self._failure(Reason.NOT_LOGGED_IN)
        if len(event.message) > MAX_AWAY_CHARS or not is_one_line(event.message):
            return self._failure(Reason.INVALID_TEXT)
        self._set_away(event.message if event.away else None)
        return OK

    @property
    def away(self) -> bool:
        """Whether the user is away now (said so on a device, and sent nothing since)."""
        return self._devices is not None and self._devices.away

    def _set_away(self, message: str | None) -> None:
        """Away (with message), or back (None): sending a message ends being away too."""
        assert self.name is not None and self._devices is not None
        self._devices.away = message is not None
        self._directory.set_away(self.name, message)

    def shares(self, name: str) -> bool:
        """(Presence.) Whether this user shares a conversation or a room with name; oneself
        too (one's other devices' away)."""
        devices = self._devices
        if devices is None:
            return False
        if not devices.partners_known and self._registered and self._accounts is not None and self.name is not None:
            devices.partners_known = True  # (once per user: the history's partners join the contacts)
            devices.contacts.update(self._accounts.store.partners(self.name))
        if name == self.name or name in devices.contacts:
            return True
        now = time.monotonic()
        if now - devices.company_at > COMPANY_LIFETIME and self._rooms is not None and self.name is not None:
            devices.company_at = now
            devices.company = frozenset(self._rooms.company(self.name))
        return name in devices.company

    def _show_on_other_devices(self, recipient: str, text: str, message_id: int, time_ms: int) -> None:
        """What this session sent, on the user's other sessions, as their own message."""
        devices = self._devices
        if devices is not None and devices.several:
            devices.to_others(self._mailbox, encode(OwnMessage(recipient, message_id, time_ms, text)))


DEVICE_ANSWERS: dict[type, Callable[[Any, Any], bytes]] = {
    Away: DeviceRules._away,
    Sessions: DeviceRules._sessions,
    EndSession: DeviceRules._end_session,
    Mark: DeviceRules._mark,
    Unread: DeviceRules._unread,
}
