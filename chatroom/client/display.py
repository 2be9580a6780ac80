"""How text from the network is shown: escaped, and (on a terminal) as a conversation.

Names and messages come from other people. Printed raw, a control character could clear the
screen, retitle the window, move the cursor over earlier lines, or (with a newline or a
bidirectional override) make one message look like several, or like another sender's.
:func:`escape` shows every such character as a visible escape instead.

On a terminal, :func:`conversation` lays a message out with its time, its sender in a colour
of its own, and the continuation lines of a multi-line text under a gutter that no sender line
can look like.
"""

import datetime
import re
import zlib

from prompt_toolkit.utils import get_cwidth

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


def local_time(time_ms: int) -> "datetime.datetime | None":
    """A time the server sent (ms since the epoch) in local time; None where the calendar has
    none (a server that breaks the protocol may send any 64-bit number)."""
    try:
        return datetime.datetime.fromtimestamp(time_ms / 1000)
    except (ValueError, OverflowError, OSError):
        return None


def escape(text: str, keep_joiners: bool = False) -> str:
    """text with control and direction-changing characters written as visible escapes.

    ``keep_joiners`` leaves ZWJ and ZWNJ as they are between two visible characters (👩‍💻,
    Persian and Indic text); anywhere else they are escaped like any invisible character.
    """
    return (_UNSAFE_BUT_JOINERS if keep_joiners else _UNSAFE).sub(_visible, text)


_ACTION = "\x01ACTION "


def as_action(text: str) -> str:
    """The text that says text as an action, as IRC's /me does (a CTCP ACTION)."""
    return f"{_ACTION}{text}\x01"


def action_of(text: str) -> str | None:
    """What an IRC user's /me says (a text "\\x01ACTION waves\\x01": "waves"), or None."""
    if text.startswith(_ACTION) and text.endswith("\x01") and len(text) > len(_ACTION) + 1:
        return text[len(_ACTION) : -1]
    return None


def message_line(sender: str, text: str) -> str:
    """A relayed message as the seed's client prints it: ``sender: text``, all escaped."""
    return f"{escape(sender)}: {escape(text, keep_joiners=True)}"


def colour_of(name: str) -> int:
    """The colour a name is always shown in (a 256-colour palette index)."""
    return _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]


def paint(text: str, colour: int) -> str:
    return f"\x1b[38;5;{colour}m{text}{_RESET}"


def dim(text: str) -> str:
    return f"\x1b[2m{text}{_RESET}"


def marked(text: str) -> str:
    """An escape written for a character that could not be shown: in reverse video, so that a
    typed ``\\x1b`` (four characters) never looks like an escaped control character."""
    return f"\x1b[7m{text}\x1b[27m"


def conversation(
    clock: str,
    sender: str,
    text: str,
    recipient: str | None = None,
    width: int = 0,
    old: bool = False,
    room: str | None = None,
) -> list[str]:
    """The terminal rows of one message: ``HH:MM sender: first line`` (or ``HH:MM → recipient:
    ...`` for one's own), then each further line of the text, and each part of a line wrapped
    at ``width`` columns (0: none), under a gutter that no sender's line can look like.
    ``old``: dim text (history). ``room``: the room it was said in, before the sender.
    An IRC user's /me (CTCP ACTION) reads as IRC clients show it: ``HH:MM * sender waves``."""
    shown_name = escape(recipient if recipient else sender)
    who = f"→ {paint(shown_name, colour_of(recipient))}" if recipient else paint(shown_name, colour_of(sender))
    head_width = (len(clock) + 1 if clock else 0) + (2 if recipient else 0) + get_cwidth(shown_name) + 2
    action, separator = action_of(text), ": "
    if action is not None:  # (one's own: "→ bob: * waves")
        text = action if recipient is None else "* " + action
        if recipient is None:
            who, separator, head_width = f"* {who}", " ", head_width + 1
    if room:
        shown_room = escape(room)
        who = f"{paint(shown_room, colour_of(room))} {who}"
        head_width += get_cwidth(shown_room) + 1
    head = f"{dim(clock)} {who}{separator}" if clock else f"{who}{separator}"
    gutter = " " * len(clock) + GUTTER
    rows = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n")):
        first_width = width - head_width if number == 0 else width - len(gutter)
        parts = (
            _wrap(_styled_atoms(line.expandtabs(8)), first_width, width - len(gutter))
            if width
            else [_joined(_styled_atoms(line))]
        )
        for part_number, part in enumerate(parts):
            lead = head if number == 0 and part_number == 0 else dim(gutter)
            rows.append(lead + (dim(part) if old else part))
    return rows


# An atom is what one character (or one escape, or a change of style) prints, and the columns
# it takes.
Atom = tuple[str, int]
MIN_WIDTH = 10  # columns of text a row keeps, however narrow the terminal

# IRC's formatting codes (an IRC user's bold, italics...): styles on a terminal, not escapes.
# Colours, reverse and monospace are dropped (a colour's digits with them, as IRC clients
# read them): the terminal's own colours are the senders'.
_FORMAT = re.compile("[\x02\x1d\x1f\x1e\x11\x16\x0f]|\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?")
_STYLES = {"\x02": (1, 22), "\x1d": (3, 23), "\x1f": (4, 24), "\x1e": (9, 29)}  # (on, off)
_STYLES_OFF = "\x1b[22;23;24;29m"


def _styled_atoms(line: str) -> list[Atom]:
    atoms: list[Atom] = []
    on: set[str] = set()
    position = 0
    for match in _FORMAT.finditer(line):
        atoms += _atoms(line[position : match.start()])
        position = match.end()
        code = match.group()[0]
        if code == "\x0f" and on:
            on.clear()
            atoms.append((_STYLES_OFF, 0))
        elif code in _STYLES:
            on ^= {code}
            atoms.append((f"\x1b[{_STYLES[code][0 if code in on else 1]}m", 0))
    atoms += _atoms(line[position:])
    if on:
        atoms.append((_STYLES_OFF, 0))
    return atoms


def _atoms(line: str) -> list[Atom]:
    atoms: list[Atom] = []
    position = 0
    for match in _UNSAFE_BUT_JOINERS.finditer(line):
        atoms += [(char, get_cwidth(char)) for char in line[position : match.start()]]
        shown = _visible(match)
        atoms.append((marked(shown), len(shown)))
        position = match.end()
    atoms += [(char, get_cwidth(char)) for char in line[position:]]
    return atoms


def _joined(atoms: list[Atom]) -> str:
    return "".join(text for text, _ in atoms)


def _wrap(atoms: list[Atom], first_width: int, width: int) -> list[str]:
    """The atoms in rows of at most first_width, then width, columns, broken after a space
    where there is one (within a row; a longer word is broken where the row ends)."""
    rows: list[str] = []
    row: list[Atom] = []
    used, limit = 0, max(first_width, MIN_WIDTH)
    for atom in atoms:
        if used + atom[1] > limit and row:
            spaces = [index for index, (text, _) in enumerate(row) if text == " "]
            cut = spaces[-1] if spaces and spaces[-1] > 0 else len(row)
            rows.append(_joined(row[:cut]))
            row = row[cut + 1 :] if cut < len(row) else []
            used, limit = sum(columns for _, columns in row), max(width, MIN_WIDTH)
        row.append(atom)
        used += atom[1]
    rows.append(_joined(row))
    return rows
