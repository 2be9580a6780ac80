"""Search in the protocol (extension version 3): SEARCH, answered SEARCH-RESULTS, and how
their bodies are laid out both ways (the codec frames them, as it does the room frames)."""

import struct
from dataclasses import dataclass

from .fields import (
    BadBody,
    at_most_most_id,
    id_and_time,
    long_text,
    name_field,
    split_id_and_time,
    split_long_text,
    split_name_field,
)
from .fields import text as _text

SEARCH = 0x16
SEARCH_RESULTS = 0x90
MAX_SEARCH_COUNT = 100
_SEARCH_HEAD = struct.Struct("!HQ")  # count, before


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
        return SEARCH, _SEARCH_HEAD.pack(message.count, message.before) + name_field(
            message.scope
        ) + message.query.encode()
    if kind is SearchResults:
        return SEARCH_RESULTS, b"".join(map(found_entry, message.found))
    return None


def found_entry(found: Found) -> bytes:
    head = id_and_time(found.id, found.time_ms) + name_field(found.conversation) + name_field(found.sender)
    return head + long_text(found.text)


def _parse_search(body):
    if len(body) < _SEARCH_HEAD.size:
        raise BadBody("count and before")
    count, before = _SEARCH_HEAD.unpack_from(body)
    before = at_most_most_id(before)
    scope, end = split_name_field(body, _SEARCH_HEAD.size)
    return Search(count, before, scope, _text(body[end:]))


def _parse_search_results(body):
    found, offset = [], 0
    while offset < len(body):
        message_id, time_ms, offset = split_id_and_time(body, offset)
        conversation, offset = split_name_field(body, offset)
        sender, offset = split_name_field(body, offset)
        text, offset = split_long_text(body, offset)
        found.append(Found(time_ms, message_id, conversation, sender, text))
    return SearchResults(tuple(found))


CLIENT_PARSERS = {SEARCH: _parse_search}
SERVER_PARSERS = {SEARCH_RESULTS: _parse_search_results}
