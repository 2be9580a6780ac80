"""One account on several devices in the protocol (extension version 4): the sessions a user
is logged in with, what one of them sent shown on the others, and read markers; their frames
and how their bodies are laid out both ways (the codec frames them, as it does the room
frames)."""

import enum
import struct
from dataclasses import dataclass

from .fields import BadBody, id_and_time, name_field, split_id_and_time, split_name_field
from .fields import text as _text

DEVICES_VERSION = 4
MOST_COUNTED = 1000  # an unread count stops there (a client shows "1000+")

# Requests.
SESSIONS = 0x17
END_SESSION = 0x18
MARK = 0x19
UNREAD = 0x1A
# Replies and pushes.
SESSION_LIST = 0x91
OWN_MESSAGE = 0x92
MARKED = 0x93
UNREAD_COUNTS = 0x94

_NUMBER = struct.Struct("!I")
_ID = struct.Struct("!Q")
_SESSION_HEAD = struct.Struct("!IBQ")  # number, flags, since (ms)
_UNREAD_TAIL = struct.Struct("!QI")  # marker, count


class SessionFlag(enum.IntFlag):
    THIS = 0x01  # the session that asked


@dataclass(slots=True)
class Sessions:
    """The sessions this user is logged in with (SESSION-LIST)."""


@dataclass(slots=True)
class EndSession:
    number: int


@dataclass(slots=True)
class Mark:
    """The last message of a conversation (a name or a #room) this device showed its user."""

    conversation: str
    id: int


@dataclass(slots=True)
class Unread:
    """What came after each conversation's marker (UNREAD-COUNTS)."""


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
    if kind is SessionList:
        return SESSION_LIST, b"".join(map(_session_entry, message.sessions))
    if kind is OwnMessage:
        body = name_field(message.recipient) + id_and_time(message.id, message.time_ms) + message.text.encode()
        return OWN_MESSAGE, body
    if kind is Marked:
        return MARKED, name_field(message.conversation) + _ID.pack(message.id)
    if kind is UnreadCounts:
        return UNREAD_COUNTS, b"".join(
            name_field(e.conversation) + _UNREAD_TAIL.pack(e.marker, e.count) for e in message.entries
        )
    return None


def _session_entry(entry: SessionEntry) -> bytes:
    head = _SESSION_HEAD.pack(entry.number, entry.flags, entry.since_ms)
    return head + name_field(entry.transport) + name_field(entry.address)


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
    return conversation, _ID.unpack_from(body, end)[0]


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
}
SERVER_PARSERS = {
    SESSION_LIST: _parse_session_list,
    OWN_MESSAGE: _parse_own_message,
    MARKED: lambda body: Marked(*_conversation_and_id(body)),
    UNREAD_COUNTS: _parse_unread_counts,
}
