"""IRC lines without I/O, for the IRC port: bytes in, messages out (irctokens tokenises each
line), and lines to send, within IRC's limits.

A line ends with LF (CR LF, or a bare LF, as clients send); it may hold at most MAX_LINE bytes
of message (512, CR LF included) after at most MAX_TAGS of tags (IRCv3 message-tags). A longer
line is refused whole (an ERR_INPUTTOOLONG for the session to send) and what it was is
skipped up to its end, without ever holding more than the limit; a line that is not text, or
holds a NUL, or has no command, is refused as such. Nothing here raises for what comes from
the network.
"""

import re
from dataclasses import dataclass
from typing import NamedTuple

import irctokens
from irctokens.const import TAG_ESCAPED, TAG_UNESCAPED

from ...protocol import LINE_BREAKS
from .speedups import compiled

MAX_LINE = 512  # bytes of a line without its tags, CR LF included (RFC 2812)
MAX_TAGS = 8191  # bytes of the tags part, its '@' and the space after it included (IRCv3)
MAX_RECEIVED = MAX_TAGS + MAX_LINE
_ESCAPE = re.compile(r"\\.?")  # a backslash, and what it escapes (a lone one at the end: dropped)
# What a parameter sent may not hold (protocol.LINE_BREAKS: it would end the line, or is not
# allowed in one), as spaces: a topic or an away message stored before our protocol refused them.
_AS_SPACES = str.maketrans(dict.fromkeys(LINE_BREAKS, " "))


class Privmsg(NamedTuple):
    """PRIVMSG to one target with text, the line a chat is made of, read without irctokens:
    the text both as read (UTF-8, for the frames that carry it on) and decoded. ``command``
    and ``params`` read as an irctokens Line's, for the answers that take any message. (A
    tuple: the compiled reader makes it without a call into Python.)"""

    tags: dict[str, str] | None
    target: str
    text: str
    raw: bytes

    @property
    def command(self) -> str:
        return "PRIVMSG"

    @property
    def params(self) -> list[str]:
        return [self.target, self.text]


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line over the limits (ERR_INPUTTOOLONG, 417)."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A line that is no IRC message: a NUL in it, or no command."""


@dataclass(frozen=True, slots=True)
class NotUtf8:
    """A line that is not UTF-8 (refused with FAIL INVALID_UTF8, the server being UTF8ONLY):
    its command ("*" where that is not readable either) and its tags, if they are."""

    command: str
    tags: dict[str, str] | None = None


class LineReader:
    """Splits what a client sends into IRC messages (irctokens Lines), refusals (TooLong,
    Unreadable) and nothing for empty lines; holds at most MAX_RECEIVED bytes of a line. A
    session's decoder for IRC, as codec.Decoder is for frames."""

    broken = False  # (an IRC line never breaks the stream: a long one is refused alone)

    def __init__(self) -> None:
        self._partial = bytearray()
        self._skipping = False  # inside a line already refused as too long

    @property
    def pending(self) -> int:
        """Bytes of a line begun and not yet ended."""
        return len(self._partial)

    def receive_data(self, data: bytes) -> list:
        out: list = []
        if self._skipping:  # (the rest of a line refused as too long)
            end = data.find(b"\n")
            if end == -1:
                return out
            self._skipping = False
            data = data[end + 1 :]
        if self._partial:
            data = bytes(self._partial) + data
            self._partial.clear()
        lines_end = data.rfind(b"\n") + 1
        out = read_messages(data, lines_end)
        rest = data[lines_end:]
        if len(rest) > MAX_RECEIVED:
            out.append(TooLong())
            self._skipping = True
        else:
            self._partial += rest
        return out


def read_messages_in_python(data: bytes, end: int) -> list:
    """The messages of the lines in data[:end] (each ends with LF): TooLong for a line over
    MAX_RECEIVED, nothing for an empty one."""
    out: list = []
    for line in data[:end].split(b"\n")[:-1]:
        if len(line) > MAX_RECEIVED:
            out.append(TooLong())
            continue
        line = line.rstrip(b"\r")
        if line.strip(b" "):
            out.append(_message(line))
    return out


def _read_messages_compiled(data: bytes, end: int) -> list:
    return compiled.read_messages(data, end, Privmsg, _message, TooLong, MAX_RECEIVED, MAX_LINE)


def _message(line: bytes):
    if line[:8] == b"PRIVMSG " and len(line) + 2 <= MAX_LINE and b"\x00" not in line and b"\r" not in line:
        privmsg = _privmsg(None, line)
        if privmsg is not None:
            return privmsg
    if b"\x00" in line:
        return Unreadable()
    tags_end = line.find(b" ") + 1 if line[:1] == b"@" else 0
    if tags_end > MAX_TAGS or len(line) - tags_end + 2 > MAX_LINE:
        return TooLong()
    tags = None  # (until read: a line whose tags are not UTF-8 is refused without them)
    try:
        # The tags are read here, in one pass (irctokens unescapes a value in time that grows
        # with its square); the rest of the line is irctokens', but for the one line a chat is
        # made of, read at once.
        tags = _tags(line[1 : tags_end - 1].decode()) if tags_end else None
        rest = line[tags_end:]
        if rest[:8] == b"PRIVMSG " and b"\r" not in rest and (privmsg := _privmsg(tags, rest)) is not None:
            return privmsg
        message = irctokens.tokenise(rest.decode())
    except UnicodeDecodeError:
        return _not_utf8(line[tags_end:], tags)
    except (ValueError, IndexError):
        return Unreadable()
    message.tags = tags
    return message


def _privmsg(tags: dict[str, str] | None, line: bytes) -> Privmsg | NotUtf8 | None:
    """A line "PRIVMSG target :text" (no CR, no NUL, within the limit) read at once; None if
    it has another shape (several words before the text, no text), for irctokens to read."""
    target, colon, text = line[8:].partition(b" :")
    if not colon or not target or b" " in target or target[:1] == b":":
        return None
    try:
        return Privmsg(tags, target.decode(), text.decode(), text)
    except UnicodeDecodeError:
        return NotUtf8("PRIVMSG", tags)


def _not_utf8(rest: bytes, tags: dict[str, str] | None) -> NotUtf8:
    """The refusal of a line that is not UTF-8 (``rest``: after its tags), with its command
    where that can be read."""
    words = rest.split()
    if words and words[0][:1] == b":":  # (a source)
        words = words[1:]
    command = words[0] if words else b""
    readable = command.isalpha() or (len(command) == 3 and command.isdigit())  # (ASCII only, as bytes)
    return NotUtf8(command.decode().upper() if readable else "*", tags)


# The messages of whole lines: compiled where it could be, the same in Python where not.
read_messages = read_messages_in_python if compiled is None else _read_messages_compiled

_UNESCAPED = dict(zip(TAG_ESCAPED, TAG_UNESCAPED, strict=True))


# A tag's value as a line carries it (IRCv3 message-tags): each character escaped at once, in
# the values that have one to escape (looked for first: most values, ids and times, have none).
_ESCAPES = str.maketrans(dict(zip(TAG_UNESCAPED, TAG_ESCAPED, strict=True)))
_TO_ESCAPE = re.compile("[" + re.escape("".join(TAG_UNESCAPED)) + "]").search


def with_tags(line: bytes, tags: dict[str, str]) -> bytes:
    """line (encoded) with these tags in front of those it has, written as irctokens writes
    them (sorted; an empty value as the bare key)."""
    written = tags_written(sorted(tags.items()))
    if line[:1] == b"@":
        return written + b";" + line[1:]
    return written + b" " + line


def tags_written(tags: list[tuple[str, str]]) -> bytes:
    """b"@key=value;..." for tags (key, value) in the order given, values escaped."""
    written = [
        key if not value else f"{key}={value.translate(_ESCAPES)}" if _TO_ESCAPE(value) else f"{key}={value}"
        for key, value in tags
    ]
    return ("@" + ";".join(written)).encode()


def _tags(text: str) -> dict[str, str]:
    """IRCv3 message tags (without the '@'), their values unescaped."""
    tags = {}
    for part in text.split(";"):
        key, _, value = part.partition("=")
        if "\\" in value:
            value = _ESCAPE.sub(lambda found: _UNESCAPED.get(found.group(0), found.group(0)[1:]), value)
        tags[key] = value
    return tags


def encode_line(
    command: str, *params: str, source: str | None = None, tags: dict | None = None, text: bool = True
) -> bytes:
    """One line to send, CR LF included; the last parameter is written as the trailing one
    (after ' :'), as servers write text, so that it may hold spaces or begin with ':'; unless
    ``text`` is false (parameters that are words, such as a BATCH's). A CR, LF or NUL in a
    parameter is written as a space: never a line of the sender's making; a trailing one too
    long for the line is cut to fit."""
    params = tuple(param.translate(_AS_SPACES) for param in params)
    if not text:
        return (irctokens.build(command, list(params), source, tags).format() + "\r\n").encode()
    head = irctokens.build(command, list(params[:-1]), source, tags).format().encode()
    if not params:
        return head + b"\r\n"
    trailing = params[-1].encode()
    # Within IRC's 512 bytes after the tags: a text longer than a line holds (a topic of 1000
    # bytes, kept whole for clients of our protocol) is cut, never inside a character.
    over = len(head) - (head.find(b" ") + 1 if head[:1] == b"@" else 0) + len(trailing) + 4 - MAX_LINE
    if over > 0:
        trailing = trailing[: len(trailing) - over].decode(errors="ignore").encode()
    return b"".join((head, b" :", trailing, b"\r\n"))


def in_lines(words: list[str], room: int) -> list[str]:
    """words joined by spaces into as few strings of at most room bytes as hold them: a list
    of names or channels in lines within IRC's 512 bytes."""
    out: list[str] = []
    line: list[str] = []
    used = 0
    for word in words:
        size = len(word.encode())
        if line and used + 1 + size > room:
            out.append(" ".join(line))
            line, used = [], 0
        used += size + (1 if line else 0)
        line.append(word)
    if line:
        out.append(" ".join(line))
    return out


def split_text(text: str, room: int) -> list[str]:
    """A message's text as the pieces IRC lines can carry: one per line of it (IRC has no
    newline in a message), and a line longer than ``room`` bytes of UTF-8 cut at spaces where
    it can, never inside a character. An empty line of the text is sent as one space."""
    pieces = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.replace("\r", " ") or " "
        while len(line.encode()) > room:
            cut = _cut(line, room)
            pieces.append(line[:cut])
            line = line[cut:].lstrip(" ") or " "
        pieces.append(line)
    return pieces


def _cut(line: str, room: int) -> int:
    """Where to cut line so that the part before fits in room bytes: at its last space, or at
    the last character that fits."""
    fits, used = 0, 0
    for index, char in enumerate(line):
        used += len(char.encode())
        if used > room:
            break
        fits = index + 1
    space = line.rfind(" ", 0, fits)
    return space if space > 0 else max(fits, 1)
