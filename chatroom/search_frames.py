"""Search in the protocol (extension version 3): SEARCH, answered SEARCH-RESULTS, and how
their bodies are laid out both ways (the codec frames them, as it does the room frames)."""

import struct
from dataclasses import dataclass

from .room_frames import BadRoomBody, _field, _split, _text

SEARCH = 0x16
SEARCH_RESULTS = 0x90
MAX_SEARCH_COUNT = 100
_SEARCH_HEAD = struct.Struct("!HQ")  # count, before
_ID_TIME = struct.Struct("!QQ")
_COUNT = struct.Struct("!I")


@dataclass(slots=True)
class Search:
    """One's messages that hold every word of query, newest first: in one conversation (a name
    or a #room) or in all (scope empty), older than before (ms; 0: now)."""

    count: int
    before: int
    scope: str
    query: str


@dataclass(slots=True)
class Found:
    time_ms: int
    id: int
    conversation: str  # the other name, or the #room
    sender: str
    text: str


@dataclass(slots=True)
class SearchResults:
    found: tuple[Found, ...]


def encode_body(message) -> tuple[int, bytes] | None:
    kind = type(message)
    if kind is Search:
        return SEARCH, _SEARCH_HEAD.pack(message.count, message.before) + _field(message.scope) + message.query.encode()
    if kind is SearchResults:
        return SEARCH_RESULTS, b"".join(map(found_entry, message.found))
    return None


def found_entry(found: Found) -> bytes:
    text = found.text.encode()
    head = _ID_TIME.pack(found.id, found.time_ms) + _field(found.conversation) + _field(found.sender)
    return head + _COUNT.pack(len(text)) + text


def _parse_search(body):
    if len(body) < _SEARCH_HEAD.size:
        raise BadRoomBody("count and before")
    count, before = _SEARCH_HEAD.unpack_from(body)
    scope, end = _split(body, _SEARCH_HEAD.size)
    return Search(count, before, scope, _text(body[end:]))


def _parse_search_results(body):
    found, offset = [], 0
    while offset < len(body):
        if len(body) < offset + _ID_TIME.size:
            raise BadRoomBody("an entry runs past the body")
        message_id, time_ms = _ID_TIME.unpack_from(body, offset)
        conversation, offset = _split(body, offset + _ID_TIME.size)
        sender, offset = _split(body, offset)
        if len(body) < offset + _COUNT.size:
            raise BadRoomBody("an entry runs past the body")
        (length,) = _COUNT.unpack_from(body, offset)
        start = offset + _COUNT.size
        if start + length > len(body):
            raise BadRoomBody("an entry runs past the body")
        found.append(Found(time_ms, message_id, conversation, sender, _text(body[start : start + length])))
        offset = start + length
    return SearchResults(tuple(found))


CLIENT_PARSERS = {SEARCH: _parse_search}
SERVER_PARSERS = {SEARCH_RESULTS: _parse_search_results}
