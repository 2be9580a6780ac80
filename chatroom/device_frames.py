"""One account on several devices in the protocol (extension version 4): the sessions a user
is logged in with, what one of them sent shown on the others, read markers, and presence with
away; their frames and how their bodies are laid out both ways (the codec frames them, as it
does the room frames)."""

import enum
import struct
from dataclasses import dataclass

from .fields import (
    BadBody,
    as_many_as_fit,
    at_most_most_id,
    id_and_time,
    name_field,
    split_id_and_time,
    split_name_field,
)
from .fields import text as _text
from .protocol import MAX_BODY

DEVICES_VERSION = 4
MOST_COUNTED = 1000  # an unread count stops there (a client shows "1000+")
MOST_MARKERS = 1000  # conversations an account may have markers for
MAX_AWAY_CHARS = 100

# Requests.
SESSIONS = 0x17
END_SESSION = 0x18
MARK = 0x19
UNREAD = 0x1A
AWAY = 0x1B
# Replies and pushes.
SESSION_LIST = 0x91
OWN_MESSAGE = 0x92
MARKED = 0x93
UNREAD_COUNTS = 0x94
PRESENCE_STATUS = 0x95
SESSION_ENDED = 0x96

_NUMBER = struct.Struct("!I")
_ID = struct.Struct("!Q")
_SESSION_HEAD = struct.Struct("!IBQ")  # number, flags, since (ms)
_UNREAD_TAIL = struct.Struct("!QI")  # marker, count
_AWAY_LENGTH = struct.Struct("!H")


class PresenceState(enum.IntEnum):
    OFFLINE = 0
    ONLINE = 1
    AWAY = 2


class SessionFlag(enum.IntFlag):
    THIS = 0x01  # the session that asked


@dataclass(slots=True)
class Sessions:
    """The sessions this user is logged in with (SESSION-LIST)."""


@dataclass(slots=True)
class EndSession:
    number: int


@dataclass(slots=True)
class SessionEnded:
    """This session was ended by another of its user's (END-SESSION): the connection closes,
    and the tokens it was issued or resumed with are revoked."""


@dataclass(slots=True)
class Mark:
    """The last message of a conversation (a name or a #room) this device showed its user."""

    conversation: str
    id: int


@dataclass(slots=True)
class Unread:
    """What came after each conversation's marker (UNREAD-COUNTS)."""


@dataclass(slots=True)
class Away:
    """Away (with a message, perhaps empty), or back (away false)."""

    away: bool
    message: str = ""


@dataclass(slots=True)
class PresenceStatus:
    """Who came, went, went away or came back: (name, state, away message) each."""

    changes: tuple[tuple[str, PresenceState, str], ...]


@dataclass(slots=True)
class SessionEntry:
    number: int
    flags: SessionFlag
    since_ms: int
    transport: str  # tcp, tls, websocket
    address: str


@dataclass(slots=True)
class SessionList:
    sessions: tuple[SessionEntry, ...]


@dataclass(slots=True)
class OwnMessage:
    """A message this user sent from another of their sessions."""

    recipient: str
    id: int
    time_ms: int
    text: str


@dataclass(slots=True)
class Marked:
    """Another of this user's sessions moved a conversation's marker."""

    conversation: str
    id: int


@dataclass(slots=True)
class UnreadEntry:
    conversation: str
    marker: int  # the id of the last message read (0: none yet)
    count: int  # messages from others after it


@dataclass(slots=True)
class UnreadCounts:
    entries: tuple[UnreadEntry, ...]


def fitting_in_a_frame(entries: list[UnreadEntry]) -> tuple[UnreadEntry, ...]:
    """The entries of an UNREAD-COUNTS, as many as one frame holds: all, where they fit (an
    account's markers are bounded, the conversations with something unread are not); else
    those with something unread first."""
    return tuple(as_many_as_fit(entries, _unread_entry_size, lambda entry: entry.count == 0, MAX_BODY))


def _unread_entry_size(entry: UnreadEntry) -> int:
    return 1 + len(entry.conversation.encode()) + _UNREAD_TAIL.size  # (a name field, the marker, the count)


def encode_body(message) -> tuple[int, bytes] | None:
    kind = type(message)
    if kind is Sessions:
        return SESSIONS, b""
    if kind is EndSession:
        return END_SESSION, _NUMBER.pack(message.number)
    if kind is Mark:
        return MARK, name_field(message.conversation) + _ID.pack(message.id)
    if kind is Unread:
        return UNREAD, b""
    if kind is Away:
        return AWAY, bytes((1 if message.away else 0,)) + message.message.encode()
    if kind is PresenceStatus:
        return PRESENCE_STATUS, b"".join(map(_status_entry, message.changes))
    if kind is SessionList:
        return SESSION_LIST, b"".join(map(_session_entry, message.sessions))
    if kind is OwnMessage:
        body = name_field(message.recipient) + id_and_time(message.id, message.time_ms) + message.text.encode()
        return OWN_MESSAGE, body
    if kind is Marked:
        return MARKED, name_field(message.conversation) + _ID.pack(message.id)
    if kind is SessionEnded:
        return SESSION_ENDED, b""
    if kind is UnreadCounts:
        return UNREAD_COUNTS, b"".join(
            name_field(e.conversation) + _UNREAD_TAIL.pack(e.marker, e.count) for e in message.entries
        )
    return None


def _session_entry(entry: SessionEntry) -> bytes:
    head = _SESSION_HEAD.pack(entry.number, entry.flags, entry.since_ms)
    return head + name_field(entry.transport) + name_field(entry.address)


def _status_entry(change: tuple[str, PresenceState, str]) -> bytes:
    name, state, away = change
    text = away.encode()
    return bytes((state,)) + name_field(name) + _AWAY_LENGTH.pack(len(text)) + text


def _parse_away(body):
    if not body or body[0] not in (0, 1):
        raise BadBody("away (1) or back (0)")
    message = _text(body[1:])
    if body[0] == 0 and message:
        raise BadBody("back has no message")
    return Away(body[0] == 1, message)


def _parse_presence_status(body):
    changes, offset = [], 0
    while offset < len(body):
        if body[offset] not in PresenceState._value2member_map_:
            raise BadBody("a presence state")
        state = PresenceState(body[offset])
        name, offset = split_name_field(body, offset + 1)
        if offset + _AWAY_LENGTH.size > len(body):
            raise BadBody("a presence entry runs past the body")
        (length,) = _AWAY_LENGTH.unpack_from(body, offset)
        start = offset + _AWAY_LENGTH.size
        if start + length > len(body):
            raise BadBody("an away message runs past the body")
        changes.append((name, state, _text(body[start : start + length])))
        offset = start + length
    return PresenceStatus(tuple(changes))


def _empty(make):
    def parse(body):
        if body:
            raise BadBody("this request has no body")
        return make()

    return parse


def _parse_end_session(body):
    if len(body) != _NUMBER.size:
        raise BadBody("a session number")
    return EndSession(_NUMBER.unpack(body)[0])


def _conversation_and_id(body) -> tuple[str, int]:
    conversation, end = split_name_field(body)
    if len(body) != end + _ID.size:
        raise BadBody("a conversation and an id")
    return conversation, at_most_most_id(_ID.unpack_from(body, end)[0])


def _parse_session_list(body):
    sessions, offset = [], 0
    while offset < len(body):
        if offset + _SESSION_HEAD.size > len(body):
            raise BadBody("a session entry runs past the body")
        number, flags, since = _SESSION_HEAD.unpack_from(body, offset)
        transport, offset = split_name_field(body, offset + _SESSION_HEAD.size)
        address, offset = split_name_field(body, offset)
        sessions.append(SessionEntry(number, SessionFlag(flags), since, transport, address))
    return SessionList(tuple(sessions))


def _parse_own_message(body):
    recipient, offset = split_name_field(body)
    message_id, time_ms, offset = split_id_and_time(body, offset)
    return OwnMessage(recipient, message_id, time_ms, _text(body[offset:]))


def _parse_unread_counts(body):
    entries, offset = [], 0
    while offset < len(body):
        conversation, offset = split_name_field(body, offset)
        if offset + _UNREAD_TAIL.size > len(body):
            raise BadBody("an unread entry runs past the body")
        marker, count = _UNREAD_TAIL.unpack_from(body, offset)
        offset += _UNREAD_TAIL.size
        entries.append(UnreadEntry(conversation, marker, count))
    return UnreadCounts(tuple(entries))


CLIENT_PARSERS = {
    SESSIONS: _empty(Sessions),
    END_SESSION: _parse_end_session,
    MARK: lambda body: Mark(*_conversation_and_id(body)),
    UNREAD: _empty(Unread),
    AWAY: _parse_away,
}
SERVER_PARSERS = {
    SESSION_LIST: _parse_session_list,
    OWN_MESSAGE: _parse_own_message,
    MARKED: lambda body: Marked(*_conversation_and_id(body)),
    UNREAD_COUNTS: _parse_unread_counts,
    PRESENCE_STATUS: _parse_presence_status,
    SESSION_ENDED: _empty(SessionEnded),
}
