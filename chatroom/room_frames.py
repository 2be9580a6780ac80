"""Rooms in the protocol (extension version 3): the room frames, their messages, and how their
bodies are laid out both ways. The codec (:mod:`chatroom.codec`) frames them like any other.

A message to a room is a SENDTO whose name field is the room (``#team``); HISTORY of a room
is answered ROOM-HISTORY. Everything else is here; docs/protocol.md has the byte examples.
"""

import enum
import struct
from dataclasses import dataclass

from .protocol import MAX_NAME_CHARS, is_valid_username

ROOMS_VERSION = 3
ROOM_PREFIX = "#"

# Client to server.
JOIN = 0x0D
PART = 0x0E
ROOMS = 0x0F
MEMBERS = 0x10
SET_TOPIC = 0x11
KICK = 0x12
INVITE = 0x13
SET_INVITE_ONLY = 0x14
GIVE_ROOM = 0x15
# Server to client.
ROOM_MESSAGE = 0x89
ROOM_LIST = 0x8A
MEMBER_LIST = 0x8B
ROOM_EVENT = 0x8C
ROOM_HISTORY = 0x8D

_ID_TIME = struct.Struct("!QQ")
_COUNT = struct.Struct("!I")
_TOPIC_LENGTH = struct.Struct("!H")
MAX_TOPIC_BYTES = 1000


class BadRoomBody(Exception):
    """A room frame's body breaks the protocol."""


def is_room_name(name: str) -> bool:
    """``#`` and 1-20 characters under the username rules."""
    return name.startswith(ROOM_PREFIX) and is_valid_username(name[1:]) and len(name) <= MAX_NAME_CHARS + 1


class RoomFlag(enum.IntFlag):
    MEMBER = 1
    OWNER = 2
    INVITE_ONLY = 4


class MemberFlag(enum.IntFlag):
    ONLINE = 1
    OWNER = 2


class EventKind(enum.IntEnum):
    JOINED = 1  # actor joined
    PARTED = 2  # actor left (or, unregistered, logged out)
    REMOVED = 3  # actor removed detail (a name)
    TOPIC = 4  # actor set the topic to detail
    INVITE_ONLY = 5  # actor made the room invite-only (detail "on") or open ("off")
    OWNER = 6  # actor handed the room to detail
    INVITED = 7  # actor invited detail


# --- Client to server ----------------------------------------------------------------------


@dataclass(slots=True)
class Join:
    room: str


@dataclass(slots=True)
class Part:
    room: str


@dataclass(slots=True)
class ListRooms:
    pass


@dataclass(slots=True)
class ListMembers:
    room: str


@dataclass(slots=True)
class SetTopic:
    room: str
    topic: str  # empty: no topic


@dataclass(slots=True)
class Kick:
    room: str
    name: str


@dataclass(slots=True)
class Invite:
    room: str
    name: str


@dataclass(slots=True)
class SetInviteOnly:
    room: str
    on: bool


@dataclass(slots=True)
class GiveRoom:
    room: str
    name: str


# --- Server to client ----------------------------------------------------------------------


@dataclass(slots=True)
class RoomMessage:
    room: str
    sender: str
    id: int
    time_ms: int
    text: str


@dataclass(slots=True)
class RoomEntry:
    name: str
    flags: RoomFlag
    members: int


@dataclass(slots=True)
class RoomList:
    rooms: tuple[RoomEntry, ...]


@dataclass(slots=True)
class MemberList:
    room: str
    topic: str
    members: tuple[tuple[str, MemberFlag], ...]


@dataclass(slots=True)
class RoomEvent:
    room: str
    kind: EventKind
    actor: str
    detail: str = ""


@dataclass(slots=True)
class RoomHistoryEntry:
    id: int
    time_ms: int
    sender: str
    text: str


@dataclass(slots=True)
class RoomHistory:
    room: str
    entries: tuple[RoomHistoryEntry, ...]


# --- Bodies ------------------------------------------------------------------------------


def _field(name: str) -> bytes:
    data = name.encode()
    return bytes((len(data),)) + data


def _text(data) -> str:
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        raise BadRoomBody("invalid UTF-8") from None


def _split(body, offset: int = 0) -> tuple[str, int]:
    if offset >= len(body) or offset + 1 + body[offset] > len(body):
        raise BadRoomBody("name field runs past the body")
    end = offset + 1 + body[offset]
    return _text(body[offset + 1 : end]), end


def room_entry(entry: RoomHistoryEntry) -> bytes:
    text = entry.text.encode()
    return _ID_TIME.pack(entry.id, entry.time_ms) + _field(entry.sender) + _COUNT.pack(len(text)) + text


def encode_body(message) -> tuple[int, bytes] | None:
    """(frame type, body) of a room message; None for any other message."""
    kind = type(message)
    if kind is RoomMessage:
        head = _field(message.room) + _field(message.sender) + _ID_TIME.pack(message.id, message.time_ms)
        return ROOM_MESSAGE, head + message.text.encode()
    if kind in _ONE_ROOM:
        return _ONE_ROOM[kind], message.room.encode()
    if kind in _ROOM_AND_NAME:
        return _ROOM_AND_NAME[kind], _field(message.room) + message.name.encode()
    if kind is ListRooms:
        return ROOMS, b""
    if kind is SetTopic:
        return SET_TOPIC, _field(message.room) + message.topic.encode()
    if kind is SetInviteOnly:
        return SET_INVITE_ONLY, _field(message.room) + bytes((1 if message.on else 0,))
    if kind is RoomList:
        return ROOM_LIST, b"".join(_field(r.name) + bytes((r.flags,)) + _COUNT.pack(r.members) for r in message.rooms)
    if kind is MemberList:
        topic = message.topic.encode()
        members = b"".join(bytes((flags,)) + _field(name) for name, flags in message.members)
        return MEMBER_LIST, _field(message.room) + _TOPIC_LENGTH.pack(len(topic)) + topic + members
    if kind is RoomEvent:
        head = _field(message.room) + bytes((message.kind,)) + _field(message.actor)
        return ROOM_EVENT, head + message.detail.encode()
    if kind is RoomHistory:
        return ROOM_HISTORY, _field(message.room) + b"".join(map(room_entry, message.entries))
    return None


_ONE_ROOM = {Join: JOIN, Part: PART, ListMembers: MEMBERS}
_ROOM_AND_NAME = {Kick: KICK, Invite: INVITE, GiveRoom: GIVE_ROOM}


def _one_room(message_class):
    return lambda body: message_class(_text(body))


def _room_and_name(message_class):
    def parse(body):
        room, end = _split(body)
        return message_class(room, _text(body[end:]))

    return parse


def _parse_rooms(body):
    if body:
        raise BadRoomBody("unexpected body")
    return ListRooms()


def _parse_set_topic(body):
    room, end = _split(body)
    return SetTopic(room, _text(body[end:]))


def _parse_invite_only(body):
    room, end = _split(body)
    if len(body) != end + 1 or body[end] > 1:
        raise BadRoomBody("one byte, 0 or 1")
    return SetInviteOnly(room, body[end] == 1)


def _parse_room_message(body):
    room, end = _split(body)
    sender, end = _split(body, end)
    if len(body) < end + _ID_TIME.size:
        raise BadRoomBody("no id and time")
    message_id, time_ms = _ID_TIME.unpack_from(body, end)
    return RoomMessage(room, sender, message_id, time_ms, _text(body[end + _ID_TIME.size :]))


def _parse_room_list(body):
    rooms, offset = [], 0
    while offset < len(body):
        name, offset = _split(body, offset)
        if len(body) < offset + 1 + _COUNT.size:
            raise BadRoomBody("a room entry runs past the body")
        rooms.append(RoomEntry(name, RoomFlag(body[offset] & 7), _COUNT.unpack_from(body, offset + 1)[0]))
        offset += 1 + _COUNT.size
    return RoomList(tuple(rooms))


def _parse_member_list(body):
    room, offset = _split(body)
    if len(body) < offset + _TOPIC_LENGTH.size:
        raise BadRoomBody("no topic")
    (length,) = _TOPIC_LENGTH.unpack_from(body, offset)
    offset += _TOPIC_LENGTH.size
    topic = _text(body[offset : offset + length])
    offset += length
    members = []
    while offset < len(body):
        flags = MemberFlag(body[offset] & 3)
        name, offset = _split(body, offset + 1)
        members.append((name, flags))
    return MemberList(room, topic, tuple(members))


def _parse_room_event(body):
    room, offset = _split(body)
    if offset >= len(body) or body[offset] not in EventKind._value2member_map_:
        raise BadRoomBody("unknown event")
    kind = EventKind(body[offset])
    actor, offset = _split(body, offset + 1)
    return RoomEvent(room, kind, actor, _text(body[offset:]))


def _parse_room_history(body):
    room, offset = _split(body)
    entries = []
    while offset < len(body):
        if len(body) < offset + _ID_TIME.size:
            raise BadRoomBody("an entry runs past the body")
        message_id, time_ms = _ID_TIME.unpack_from(body, offset)
        sender, offset = _split(body, offset + _ID_TIME.size)
        if len(body) < offset + _COUNT.size:
            raise BadRoomBody("an entry runs past the body")
        (length,) = _COUNT.unpack_from(body, offset)
        start = offset + _COUNT.size
        if start + length > len(body):
            raise BadRoomBody("an entry runs past the body")
        entries.append(RoomHistoryEntry(message_id, time_ms, sender, _text(body[start : start + length])))
        offset = start + length
    return RoomHistory(room, tuple(entries))


CLIENT_PARSERS = {
    JOIN: _one_room(Join),
    PART: _one_room(Part),
    ROOMS: _parse_rooms,
    MEMBERS: _one_room(ListMembers),
    SET_TOPIC: _parse_set_topic,
    KICK: _room_and_name(Kick),
    INVITE: _room_and_name(Invite),
    SET_INVITE_ONLY: _parse_invite_only,
    GIVE_ROOM: _room_and_name(GiveRoom),
}
SERVER_PARSERS = {
    ROOM_MESSAGE: _parse_room_message,
    ROOM_LIST: _parse_room_list,
    MEMBER_LIST: _parse_member_list,
    ROOM_EVENT: _parse_room_event,
    ROOM_HISTORY: _parse_room_history,
}
ROOM_REQUESTS = (Join, Part, ListRooms, ListMembers, SetTopic, Kick, Invite, SetInviteOnly, GiveRoom)
