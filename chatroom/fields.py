"""The pieces every frame body is made of, both ways: a name field (one length byte, then that
many bytes of UTF-8), text (UTF-8), a long text (a u32 length, then the text) and an entry's
id and time (two u64). The codec, the body parsers and the room and search
frames all read and write them here; a body that breaks them raises :class:`BadBody`, which
the decoder turns into a Malformed event.
"""

import struct
from collections.abc import Callable
from typing import Any

_LENGTH = struct.Struct("!I")
_ID_TIME = struct.Struct("!QQ")
ID_AND_TIME_SIZE = _ID_TIME.size  # a message's id and time, as a body carries them


MOST_ID = (1 << 63) - 1  # ids and times are kept as SQLite's signed 64-bit integers


def at_most_most_id(value: int) -> int:
    """A u64 a client sent as an id or a time, as the store can hold it: one past every id
    there can be (2**63 and up) names nothing more than the greatest."""
    return value if value <= MOST_ID else MOST_ID


class BadBody(Exception):
    """Raised by a body parser for a body that breaks the protocol."""


def name_field(name: str) -> bytes:
    encoded = name.encode()
    if len(encoded) > 255:
        raise ValueError(f"name too long for a name field: {len(encoded)} bytes")
    return bytes((len(encoded),)) + encoded


def text(data) -> str:
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        raise BadBody("invalid UTF-8") from None


def split_name_field(body, offset: int = 0) -> tuple[str, int]:
    """The name in the name field at offset of body, and where that field ends."""
    if offset >= len(body) or offset + 1 + body[offset] > len(body):
        raise BadBody("name field runs past the body")
    end = offset + 1 + body[offset]
    return text(body[offset + 1 : end]), end


def long_text(data: str) -> bytes:
    encoded = data.encode()
    return _LENGTH.pack(len(encoded)) + encoded


def split_long_text(body, offset: int) -> tuple[str, int]:
    """The long text at offset of body, and where it ends."""
    start = offset + _LENGTH.size
    if start > len(body) or start + _LENGTH.unpack_from(body, offset)[0] > len(body):
        raise BadBody("a text runs past the body")
    end = start + _LENGTH.unpack_from(body, offset)[0]
    return text(body[start:end]), end


def id_and_time(message_id: int, time_ms: int) -> bytes:
    return _ID_TIME.pack(message_id, time_ms)


def split_id_and_time(body, offset: int) -> tuple[int, int, int]:
    """The id and time at offset of body, and where they end."""
    if offset + _ID_TIME.size > len(body):
        raise BadBody("an entry runs past the body")
    message_id, time_ms = _ID_TIME.unpack_from(body, offset)
    return message_id, time_ms, offset + _ID_TIME.size


def as_many_as_fit(entries: list, size_of: Callable[[Any], int], later: Callable[[Any], bool], room: int) -> list:
    """The entries of a list frame that fit in room bytes of its body (size_of: an entry's
    bytes): all, as they are, where they do; else those ``later`` does not put off first, each
    kind in the order given, as many as fit."""
    sizes = [size_of(entry) for entry in entries]
    if sum(sizes) <= room:
        return entries
    fitting = []
    for entry, size in sorted(zip(entries, sizes, strict=True), key=lambda pair: later(pair[0])):
        room -= size
        if room < 0:
            break
        fitting.append(entry)
    return fitting
