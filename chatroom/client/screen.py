"""What the terminal client prints: a conversation, wrapped to the terminal's width, with
times, a colour per sender, a bell, one's own messages once, and the seed's words with a
reason after them."""

import datetime
import shutil
import time

from .commands import usage
from .display import conversation, dim, escape

MARK_FAILED = "✗"


class TerminalOutput:
    def __init__(self, timestamps: bool = True, bell: bool = True):
        self._timestamps = timestamps
        self._bell = bell

    def _clock(self) -> str:
        return time.strftime("%H:%M") if self._timestamps else ""

    def _print(self, lines):
        print("\n".join(lines), flush=True)

    def _conversation(self, clock, sender, text, recipient=None, old=False):
        # The width now, not at start: the terminal may have been resized. One column spare,
        # so that a full row never leaves the cursor waiting to wrap.
        width = shutil.get_terminal_size().columns - 1
        return conversation(clock, sender, text, recipient=recipient, width=width, old=old)

    def message(self, sender, text):
        lines = self._conversation(self._clock(), sender, text)
        if self._bell:
            lines[-1] += "\a"
        self._print(lines)

    def outcome(self, word, reason=None):
        print(f"{word} ({reason})" if reason else word, flush=True)

    def names(self, names):
        if not names:
            print(dim("(nobody is logged in)"), flush=True)
        for name in names:
            print(escape(name), flush=True)

    def sent(self, recipient, text, word, reason):
        lines = self._conversation(self._clock(), "", text, recipient=recipient)
        if word == "Stored":
            lines[-1] += " " + dim(f"(stored: {reason})" if reason else "(stored)")
        elif word != "Success":
            lines[-1] += f" {MARK_FAILED} {word}" + (f" ({reason})" if reason else "")
        self._print(lines)

    def usage(self):
        print(usage(terminal=True), flush=True)

    def away(self):
        self.notice("while you were away:")

    def stored(self, message):
        self._print(self._conversation(_when(message.time_ms), message.sender, message.text))

    def history(self, peer, entries):
        if not entries:
            self.notice(f"(no messages with {escape(peer)})")
            return
        count = f"{len(entries)} message" + ("s" if len(entries) != 1 else "")
        self.notice(f"── history with {escape(peer)}: the last {count} ──")
        for entry in entries:
            clock = _when(entry.time_ms)
            if entry.sent:
                self._print(self._conversation(clock, "", entry.text, recipient=peer, old=True))
            else:
                self._print(self._conversation(clock, peer, entry.text, old=True))

    def notice(self, text):
        print(dim(text), flush=True)

    def warning(self, text):
        self.notice(text)


def _when(time_ms: int) -> str:
    """HH:MM for today, else the date too."""
    moment = datetime.datetime.fromtimestamp(time_ms / 1000)
    return moment.strftime("%H:%M" if moment.date() == datetime.date.today() else "%Y-%m-%d %H:%M")
