"""The chatroom wire protocol: frame types, limits, and the messages both sides exchange.

Every frame is ``type`` (u8), ``length`` (u32, big-endian), then ``length`` bytes of body.
This module only names things; turning them into bytes and back is :mod:`chatroom.codec`.
"""

import enum
import unicodedata
from dataclasses import dataclass

# Client to server.
LOGIN = 0x01
LIST = 0x02
SENDTO = 0x03
LOGOUT = 0x04
# Server to client.
USER_LIST = 0x81
RESPONSE = 0x82
INCOMING = 0x83

DEFAULT_PORT = 5555
HEADER_SIZE = 5
MAX_NAME_CHARS = 20
MAX_TEXT_CHARS = 65535
# The largest body a valid frame can have: a name field of 20 four-byte characters, then
# 65535 four-byte characters of text.
MAX_BODY = 1 + 4 * MAX_NAME_CHARS + 4 * MAX_TEXT_CHARS


class Status(enum.IntEnum):
    OK = 0x00
    FAILURE = 0x01
    MALFORMED = 0x02


# Categories a name may not use: control (Cc), format (Cf: invisible and bidi controls, such
# as U+200B or U+202E), private use (Co), surrogate (Cs) and unassigned (Cn).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
# Letters and marks that draw nothing, which a name could hide behind: the Hangul fillers,
# the braille blank, the combining grapheme joiner and the Khmer inherent vowels.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")


def is_valid_username(name: str) -> bool:
    """1-20 code points, none of them whitespace, invisible (categories Cc, Cf, Co, Cs, Cn) or
    a blank letter (such as U+3164 HANGUL FILLER)."""
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        return False
    return not any(c.isspace() or c in _BLANKS or unicodedata.category(c) in _INVISIBLE_CATEGORIES for c in name)


def is_valid_text(text: str) -> bool:
    return 1 <= len(text) <= MAX_TEXT_CHARS


# --- Client to server -------------------------------------------------------------------


@dataclass(slots=True)
class Login:
    name: str


@dataclass(slots=True)
class ListUsers:
    pass


@dataclass(slots=True)
class SendTo:
    recipient: str
    text: str


@dataclass(slots=True)
class Logout:
    pass


# --- Server to client -------------------------------------------------------------------


@dataclass(slots=True)
class UserList:
    names: tuple[str, ...]


@dataclass(slots=True)
class Response:
    status: Status


@dataclass(slots=True)
class Incoming:
    """A message relayed to its recipient, naming the sender as the server knows it."""

    sender: str
    text: str


# --- Frames that could not become a message -------------------------------------------


@dataclass(slots=True)
class Malformed:
    """A complete frame whose type or body breaks the protocol; the stream is still in step."""

    frame_type: int


@dataclass(slots=True)
class FrameTooLarge:
    """A header announcing more than MAX_BODY bytes; the stream cannot be resynchronised."""

    frame_type: int
    length: int
