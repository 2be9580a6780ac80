"""How text from the network is shown: escaped, and (on a terminal) as a conversation.

Names and messages come from other people. Printed raw, a control character could clear the
screen, retitle the window, move the cursor over earlier lines, or (with a newline or a
bidirectional override) make one message look like several, or like another sender's.
:func:`escape` shows every such character as a visible escape instead.

On a terminal, :func:`conversation` lays a message out with its time, its sender in a colour
of its own, and the continuation lines of a multi-line text under a gutter that no sender line
can look like.
"""

import re
import zlib

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JOINERS = "\u200c\u200d"  # ZWNJ, ZWJ: part of emoji sequences and of Persian and Indic words
# Format characters that reorder or hide text, and the Unicode line and paragraph separators.
_INVISIBLE = set("\u061c\u200b\u200e\u200f\u2028\u2029\u2060\ufeff" + _JOINERS) | {
    chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
# C0, DEL and C1 are exactly Unicode's category Cc.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f" + "".join(sorted(_INVISIBLE)) + "]")
# The same, except joiners with a visible character on each side.
_UNSAFE_BUT_JOINERS = re.compile(
    "[\x00-\x1f\x7f-\x9f" + "".join(sorted(_INVISIBLE - set(_JOINERS))) + "]"
    f"|^[{_JOINERS}]|[{_JOINERS}]$|(?<=[\\s{_JOINERS}])[{_JOINERS}]|[{_JOINERS}](?=[\\s{_JOINERS}])"
)
GUTTER = "  │ "
# Mid-tone colours (256-colour palette) that read on dark and on light backgrounds alike.
_PALETTE = (167, 68, 71, 133, 173, 73, 98, 136, 32, 126, 65, 166)
_RESET = "\x1b[0m"


def _visible(match) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str, keep_joiners: bool = False) -> str:
    """text with control and direction-changing characters written as visible escapes.

    ``keep_joiners`` leaves ZWJ and ZWNJ as they are between two visible characters (👩‍💻,
    Persian and Indic text); anywhere else they are escaped like any invisible character.
    """
    return (_UNSAFE_BUT_JOINERS if keep_joiners else _UNSAFE).sub(_visible, text)


def message_line(sender: str, text: str) -> str:
    """A relayed message as the seed's client prints it: ``sender: text``, all escaped."""
    return f"{escape(sender)}: {escape(text)}"


def colour_of(name: str) -> int:
    """The colour a name is always shown in (a 256-colour palette index)."""
    return _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]


def paint(text: str, colour: int) -> str:
    return f"\x1b[38;5;{colour}m{text}{_RESET}"


def dim(text: str) -> str:
    return f"\x1b[2m{text}{_RESET}"


def conversation(clock: str, sender: str, text: str, recipient: str | None = None) -> list[str]:
    """The terminal lines of one message: ``HH:MM sender: first line`` (or ``HH:MM → recipient:
    ...`` for one's own), then each further line of the text under a gutter."""
    who = (
        f"→ {paint(escape(recipient), colour_of(recipient))}" if recipient else paint(escape(sender), colour_of(sender))
    )
    first, *rest = text.replace("\r\n", "\n").split("\n")
    lines = [f"{dim(clock)} {who}: {_shown(first)}" if clock else f"{who}: {_shown(first)}"]
    lines += [dim(" " * len(clock) + GUTTER) + _shown(line) for line in rest]
    return lines


def _shown(line: str) -> str:
    return escape(line.expandtabs(8), keep_joiners=True)
