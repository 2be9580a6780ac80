"""The chatroom wire protocol: frame types, limits, and the messages both sides exchange.

Every frame is ``type`` (u8), ``length`` (u32, big-endian), then ``length`` bytes of body.
This module only names things; turning them into bytes and back is :mod:`chatroom.codec`.
"""

import enum
import unicodedata
from dataclasses import dataclass, field

# Client to server.
LOGIN = 0x01
LIST = 0x02
SENDTO = 0x03
LOGOUT = 0x04
# Client to server, extension (see docs/protocol.md): HELLO first, the others after it.
HELLO = 0x05
REGISTER = 0x06
AUTHENTICATE = 0x07
CHANGE_PASSWORD = 0x08
HISTORY = 0x09
SESSION_TOKEN = 0x0A  # version 2
RESUME = 0x0B  # version 2
WATCH = 0x0C  # version 2
# Server to client.
USER_LIST = 0x81
RESPONSE = 0x82
INCOMING = 0x83
# Server to client, extension: only towards clients that said HELLO.
HISTORY_PAGE = 0x84
STORED_MESSAGE = 0x85
VERSION = 0x86  # answers HELLO of a version higher than the server's own
TOKEN = 0x87  # version 2: answers SESSION-TOKEN
PRESENCE = 0x88  # version 2: who came online or went offline, to a client that watches
DIRECT_MESSAGE = 0x8E  # version 3: a relayed message with its id and time (INCOMING before)
KEPT_MESSAGE = 0x8F  # version 3: a message kept while away, with its id (STORED-MESSAGE before)

EXTENSION_VERSION = 4  # 2: FAILURE carries a reason; session tokens; presence pushed. 3: rooms. 4: devices
MAX_PASSWORD_BYTES = 255
MAX_HISTORY_COUNT = 1000
DEFAULT_PORT = 5555
HEADER_SIZE = 5
MAX_NAME_CHARS = 20
MAX_TEXT_CHARS = 65535
# The largest body a valid frame can have: a name field of 20 four-byte characters, then
# 65535 four-byte characters of text.
MAX_BODY = 1 + 4 * MAX_NAME_CHARS + 4 * MAX_TEXT_CHARS
MAX_FRAME = HEADER_SIZE + MAX_BODY
# A server's frames carry a message with more beside it: the largest, one message of the
# longest text from the longest name, with a #room's name field, an id, a time and a length
# (ROOM-HISTORY's and SEARCH-RESULTS' one entry), is 102 bytes over MAX_BODY.
MAX_SERVER_BODY = MAX_BODY + (2 + 4 * MAX_NAME_CHARS) + 8 + 8 + 4


class Status(enum.IntEnum):
    OK = 0x00
    FAILURE = 0x01
    MALFORMED = 0x02
    # Extension statuses, only towards clients that said HELLO:
    REGISTERED = 0x03  # LOGIN: the name is registered; AUTHENTICATE with its password
    STORED = 0x04  # SENDTO: the recipient is offline; the message is kept for them


class Reason(enum.IntEnum):
    """Why a request failed: the second byte of a FAILURE, towards clients of extension
    version 2 or later (docs/protocol.md). Where a reason has a detail, it follows as text."""

    INVALID_NAME = 0x01
    NAME_IN_USE = 0x02
    LOOKS_LIKE = 0x03  # detail: the name it looks like (logged in, or registered)
    WRONG_PASSWORD = 0x04
    TOO_MANY_TRIES = 0x05  # detail: the seconds to wait, in decimal digits
    NOT_LOGGED_IN = 0x06
    ALREADY_LOGGED_IN = 0x07  # detail: the name the connection is logged in as
    NOT_ONLINE = 0x08
    MAILBOX_FULL = 0x09
    INVALID_TEXT = 0x0A
    INVALID_PASSWORD = 0x0B
    NAME_REGISTERED = 0x0C
    NOT_REGISTERED = 0x0D  # the request needs a registered name, logged in with its password
    UNAVAILABLE = 0x0E  # the server cannot do it now (its store or the cluster is unreachable)
    NOT_DELIVERED = 0x0F  # the recipient is not taking messages (stalled)
    BUSY = 0x10  # too many password checks of this name at once; try again
    NO_ACCOUNTS = 0x11  # this server keeps no accounts or history
    INVALID_COUNT = 0x12
    REGISTRATION_LIMIT = 0x13  # this address registered the most names it may this hour
    INVALID_TOKEN = 0x14  # RESUME: the token is unknown, expired or revoked, or not this name's
    # Version 3: rooms.
    INVALID_ROOM = 0x15  # not # and 1-20 characters under the username rules
    NO_SUCH_ROOM = 0x16
    NOT_A_MEMBER = 0x17
    NOT_OWNER = 0x18
    INVITE_ONLY = 0x19  # the room is invite-only, and the user was not invited
    ROOM_FULL = 0x1A  # detail: the members a room may have
    TOO_MANY_ROOMS = 0x1B  # detail: the limit (the user's rooms, or the server's)
    # Version 4: devices.
    TOO_MANY_SESSIONS = 0x1C  # detail: the sessions one account may have at once
    NO_SUCH_SESSION = 0x1D
    TOO_MANY_MARKERS = 0x1E  # detail: the conversations an account may have markers for


# Categories a name may not use: control (Cc), format (Cf: invisible and bidi controls, such
# as U+200B or U+202E), private use (Co), surrogate (Cs) and unassigned (Cn).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
# Letters and marks that draw nothing, which a name could hide behind: the Hangul fillers,
# the braille blank, the combining grapheme joiner and the Khmer inherent vowels.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")


def is_valid_username(name: str) -> bool:
    """1-20 code points, none of them whitespace, invisible (categories Cc, Cf, Co, Cs, Cn) or
    a blank letter (such as U+3164 HANGUL FILLER), and not beginning with ``#`` (a room)."""
    if not 1 <= len(name) <= MAX_NAME_CHARS or name[0] == "#":
        return False
    if name.isascii():  # (most names: printable ASCII is what _allowed_in_name allows of it)
        return name.isprintable() and " " not in name
    return all(_allowed_in_name(c) for c in name)


def _allowed_in_name(c: str) -> bool:
    """The rule for each code point of a name: no whitespace, nothing invisible, no blank."""
    return not (c.isspace() or c in _BLANKS or unicodedata.category(c) in _INVISIBLE_CATEGORIES)


# What ends a line somewhere the text is shown (IRC's CR LF; NUL, where C strings end it): a
# text that is one line by its nature, a topic or an away message, holds none of them.
LINE_BREAKS = "\r\n\0"
_LINE_BREAKS = frozenset(LINE_BREAKS)


def is_one_line(text: str) -> bool:
    """No CR, LF or NUL in text."""
    return _LINE_BREAKS.isdisjoint(text)


def is_valid_password(password: str) -> bool:
    """1-255 bytes of UTF-8."""
    return 1 <= len(password.encode()) <= MAX_PASSWORD_BYTES


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
    # The text as it came (UTF-8), when it came in a frame: the relayed frame reuses it
    # instead of encoding the text again.
    raw: bytes = field(default=b"", compare=False, repr=False)


@dataclass(slots=True)
class Logout:
    pass


@dataclass(slots=True)
class Hello:
    """Announces the extension; answered OK by a server that has it (MALFORMED by one that
    does not)."""

    version: int


@dataclass(slots=True)
class ServerVersion:
    """The answer to a HELLO asking for more than the server has: the version it speaks (the
    connection then uses that one)."""

    version: int


@dataclass(slots=True)
class Register:
    name: str
    password: str


@dataclass(slots=True)
class Authenticate:
    """LOGIN with the password of a registered name."""

    name: str
    password: str


@dataclass(slots=True)
class ChangePassword:
    old: str
    new: str


@dataclass(slots=True)
class HistoryRequest:
    """Up to ``count`` messages between the asker and ``peer``, newest last, older than the
    message ``before`` (0: up to the newest)."""

    peer: str
    count: int
    before: int = 0


@dataclass(slots=True)
class TokenRequest:
    """Asks for a session token, to log in again later without the password (RESUME)."""


@dataclass(slots=True)
class Resume:
    """Log in as name with a session token it was given."""

    name: str
    token: str


@dataclass(slots=True)
class Watch:
    """Start (or stop) being told who comes online and who goes offline (PRESENCE)."""

    on: bool


# --- Server to client -------------------------------------------------------------------


@dataclass(slots=True)
class UserList:
    names: tuple[str, ...]


@dataclass(slots=True)
class Response:
    status: Status
    reason: Reason | None = None  # FAILURE, towards a client of extension version 2 or later
    detail: str = ""


@dataclass(slots=True)
class Incoming:
    """A message relayed to its recipient, naming the sender as the server knows it."""

    sender: str
    text: str


@dataclass(slots=True)
class DirectMessage:
    """A relayed message to a client of version 3: its id (as in the history) and time."""

    sender: str
    id: int
    time_ms: int
    text: str


@dataclass(slots=True)
class HistoryEntry:
    id: int
    time_ms: int
    sent: bool  # True: the asker sent it to the peer; False: the peer sent it to the asker
    text: str


@dataclass(slots=True)
class HistoryPage:
    peer: str
    entries: tuple[HistoryEntry, ...]


@dataclass(slots=True)
class StoredMessage:
    """A message kept while its recipient was offline, delivered at their next login."""

    sender: str
    time_ms: int
    text: str
    id: int = 0  # as in the history; to a client of version 3 (KEPT-MESSAGE), else 0 (STORED-MESSAGE)


@dataclass(slots=True)
class SessionToken:
    token: str


@dataclass(slots=True)
class Presence:
    """Who is online now (True) or offline now (False): everyone online when watching starts,
    then the changes, at most once a second."""

    changes: tuple[tuple[str, bool], ...]


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
