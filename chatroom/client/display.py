"""Making untrusted text from the network safe to print.

Names and messages come from other people. Printed raw, a control character could clear the
screen, retitle the window, move the cursor over earlier lines, or (with a newline or a
bidirectional override) make one message look like several, or like another sender's.
:func:`escape` shows every such character as a visible escape instead.
"""

import re

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Format characters that reorder or hide text, and the Unicode line and paragraph separators.
_INVISIBLE = set("\u061c\u200b\u200c\u200d\u200e\u200f\u2028\u2029\u2060\ufeff") | {
    chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
# C0, DEL and C1 are exactly Unicode's category Cc.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f" + "".join(sorted(_INVISIBLE)) + "]")


def _visible(match) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """text with control and direction-changing characters written as visible escapes."""
    return _UNSAFE.sub(_visible, text)


def message_line(sender: str, text: str) -> str:
    return f"{escape(sender)}: {escape(text)}"
