"""IRC lines without I/O, for the IRC port: bytes in, messages out (irctokens tokenises each
line), and lines to send, within IRC's limits.

A line ends with LF (CR LF, or a bare LF, as clients send); it may hold at most MAX_LINE bytes
of message (512, CR LF included) after at most MAX_TAGS of tags (IRCv3 message-tags). A longer
line is refused whole (an ERR_INPUTTOOLONG for the session to send) and what it was is
skipped up to its end, without ever holding more than the limit; a line that is not text, or
holds a NUL, or has no command, is refused as such. Nothing here raises for what comes from
the network.
"""

from dataclasses import dataclass

import irctokens

MAX_LINE = 512  # bytes of a line without its tags, CR LF included (RFC 2812)
MAX_TAGS = 8191  # bytes of the tags part, its '@' and the space after it included (IRCv3)
MAX_RECEIVED = MAX_TAGS + MAX_LINE


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line over the limits (ERR_INPUTTOOLONG, 417)."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A line that is no IRC message: not UTF-8, a NUL in it, or no command."""


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
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            if self._skipping:
                self._skipping = False
            elif len(self._partial) + end - start > MAX_RECEIVED:
                out.append(TooLong())
                self._partial.clear()
            else:
                self._partial += data[start:end]
                line = bytes(self._partial).rstrip(b"\r")
                self._partial.clear()
                if line.strip(b" "):
                    out.append(_message(line))
            start = end + 1
        rest = len(data) - start
        if not self._skipping and rest:
            if len(self._partial) + rest > MAX_RECEIVED:
                out.append(TooLong())
                self._partial.clear()
                self._skipping = True
            else:
                self._partial += data[start:]
        return out


def _message(line: bytes):
    if b"\x00" in line:
        return Unreadable()
    tags_end = line.find(b" ") + 1 if line[:1] == b"@" else 0
    if tags_end > MAX_TAGS or len(line) - tags_end + 2 > MAX_LINE:
        return TooLong()
    try:
        line.decode()
        return irctokens.tokenise(line)
    except (UnicodeDecodeError, ValueError, IndexError):
        return Unreadable()


def encode_line(
    command: str, *params: str, source: str | None = None, tags: dict | None = None, text: bool = True
) -> bytes:
    """One line to send, CR LF included; the last parameter is written as the trailing one
    (after ' :'), as servers write text, so that it may hold spaces or begin with ':'; unless
    ``text`` is false (parameters that are words, such as a BATCH's)."""
    if not text:
        return (irctokens.build(command, list(params), source, tags).format() + "\r\n").encode()
    head = irctokens.build(command, list(params[:-1]), source, tags).format()
    return (f"{head} :{params[-1]}\r\n" if params else f"{head}\r\n").encode()


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
