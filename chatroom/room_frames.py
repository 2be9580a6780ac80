"""Rooms in the protocol (extension version 3): the room frames, their messages, and how their
bodies are laid out both ways. The codec (:mod:`chatroom.codec`) frames them like any other.

A message to a room is a SENDTO whose name field is the room (``#team``); HISTORY of a room
is answered ROOM-HISTORY. Everything else is here; docs/protocol.md has the byte examples.
"""

import enum
import struct
from dataclasses import dataclass

from .fields import BadBody, id_and_time, long_text, name_field, split_id_and_time, split_long_text, split_name_field
from .fields import text as _text
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

_COUNT = struct.Struct("!I")
_TOPIC_LENGTH = struct.Struct("!H")
MAX_TOPIC_BYTES = 1000


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


# Every MemberFlag by its value: a list of a thousand members is made and read at each join, and
# enum's arithmetic (|, &, a call) costs more than the rest of a member's entry.
MEMBER_FLAGS = tuple(MemberFlag(value) for value in range(4))


class EventKind(enum.IntEnum):
    JOINED = 1  # actor joined
    PARTED = 2  # actor left; unregistered, out at logout: detail "logged out" or "disconnected"
    REMOVED = 3  # actor removed detail (a name)
    TOPIC = 4  # actor set the topic to detail
    INVITE_ONLY = 5  # actor made the room invite-only (detail "on") or open ("off")
    OWNER = 6  # actor handed the room to detail (itself: it took a room that had no owner)
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


def room_entry(entry: RoomHistoryEntry) -> bytes:
    return id_and_time(entry.id, entry.time_ms) + name_field(entry.sender) + long_text(entry.text)


def encode_body(message) -> tuple[int, bytes] | None:
    """(frame type, body) of a room message; None for any other message."""
    kind = type(message)
    if kind is RoomMessage:
        head = name_field(message.room) + name_field(message.sender) + id_and_time(message.id, message.time_ms)
        return ROOM_MESSAGE, head + message.text.encode()
    if kind in _ONE_ROOM:
        return _ONE_ROOM[kind], message.room.encode()
    if kind in _ROOM_AND_NAME:
        return _ROOM_AND_NAME[kind], name_field(message.room) + message.name.encode()
    if kind is ListRooms:
        return ROOMS, b""
    if kind is SetTopic:
        return SET_TOPIC, name_field(message.room) + message.topic.encode()
    if kind is SetInviteOnly:
        return SET_INVITE_ONLY, name_field(message.room) + bytes((1 if message.on else 0,))
    if kind is RoomList:
        return ROOM_LIST, b"".join(
            name_field(r.name) + bytes((r.flags,)) + _COUNT.pack(r.members) for r in message.rooms
        )
    if kind is MemberList:
        topic = message.topic.encode()
        members = b"".join(bytes((flags,)) + name_field(name) for name, flags in message.members)
        return MEMBER_LIST, name_field(message.room) + _TOPIC_LENGTH.pack(len(topic)) + topic + members
    if kind is RoomEvent:
        head = name_field(message.room) + bytes((message.kind,)) + name_field(message.actor)
        return ROOM_EVENT, head + message.detail.encode()
    if kind is RoomHistory:
        return ROOM_HISTORY, name_field(message.room) + b"".join(map(room_entry, message.entries))
    return None


_ONE_ROOM = {Join: JOIN, Part: PART, ListMembers: MEMBERS}
_ROOM_AND_NAME = {Kick: KICK, Invite: INVITE, GiveRoom: GIVE_ROOM}


def _one_room(message_class):
    return lambda body: message_class(_text(body))


def _room_and_name(message_class):
    def parse(body):
        room, end = split_name_field(body)
        return message_class(room, _text(body[end:]))

    return parse


def _parse_rooms(body):
    if body:
        raise BadBody("unexpected body")
    return ListRooms()


def _parse_set_topic(body):
    room, end = split_name_field(body)
    return SetTopic(room, _text(body[end:]))


def _parse_invite_only(body):
    room, end = split_name_field(body)
    if len(body) != end + 1 or body[end] > 1:
        raise BadBody("one byte, 0 or 1")
    return SetInviteOnly(room, body[end] == 1)


def _parse_room_message(body):
    room, end = split_name_field(body)
    sender, end = split_name_field(body, end)
    message_id, time_ms, end = split_id_and_time(body, end)
    return RoomMessage(room, sender, message_id, time_ms, _text(body[end:]))


def _parse_room_list(body):
    rooms, offset = [], 0
    while offset < len(body):
        name, offset = split_name_field(body, offset)
        if len(body) < offset + 1 + _COUNT.size:
            raise BadBody("a room entry runs past the body")
        rooms.append(RoomEntry(name, RoomFlag(body[offset] & 7), _COUNT.unpack_from(body, offset + 1)[0]))
        offset += 1 + _COUNT.size
    return RoomList(tuple(rooms))


def _parse_member_list(body):
    room, offset = split_name_field(body)
    if len(body) < offset + _TOPIC_LENGTH.size:
        raise BadBody("no topic")
    (length,) = _TOPIC_LENGTH.unpack_from(body, offset)
    offset += _TOPIC_LENGTH.size
    topic = _text(body[offset : offset + length])
    offset += length
    members = []
    while offset < len(body):
        flags = MEMBER_FLAGS[body[offset] & 3]
        name, offset = split_name_field(body, offset + 1)
        members.append((name, flags))
    return MemberList(room, topic, tuple(members))


def _parse_room_event(body):
    room, offset = split_name_field(body)
    if offset >= len(body) or body[offset] not in EventKind._value2member_map_:
        raise BadBody("unknown event")
    kind = EventKind(body[offset])
    actor, offset = split_name_field(body, offset + 1)
    return RoomEvent(room, kind, actor, _text(body[offset:]))


def _parse_room_history(body):
    room, offset = split_name_field(body)
    entries = []
    while offset < len(body):
        message_id, time_ms, offset = split_id_and_time(body, offset)
        sender, offset = split_name_field(body, offset)
        text, offset = split_long_text(body, offset)
        entries.append(RoomHistoryEntry(message_id, time_ms, sender, text))
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
