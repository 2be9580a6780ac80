"""What the terminal client prints: a conversation, wrapped to the terminal's width, with
times, a colour per sender, a bell, one's own messages once, and the seed's words with a
reason after them."""

import datetime
import shutil
import time

from ..device_frames import MOST_COUNTED, SessionFlag
from ..room_frames import EventKind, MemberFlag, RoomFlag
from .commands import usage
from .display import conversation, dim, escape, local_time

MARK_FAILED = "✗"


class TerminalOutput:
    def __init__(self, timestamps: bool = True, bell: bool = True):
        self._timestamps = timestamps
        self._bell = bell

    def _clock(self) -> str:
        return time.strftime("%H:%M") if self._timestamps else ""

    def _print(self, lines):
        print("\n".join(lines), flush=True)

    def _conversation(self, clock, sender, text, recipient=None, old=False, room=None):
        # The width now, not at start: the terminal may have been resized. One column spare,
        # so that a full row never leaves the cursor waiting to wrap.
        width = shutil.get_terminal_size().columns - 1
        return conversation(clock, sender, text, recipient=recipient, width=width, old=old, room=room)

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
        if recipient.startswith("#") and word == "Success":
            return  # it shows as it comes back, in the room's order
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

    def _history_header(self, entries, of: str) -> bool:
        """The line above a history (``of``: "with bob", "of #team"); False when it is empty."""
        if not entries:
            self.notice(f"(no messages {of})")
            return False
        count = f"{len(entries)} message" + ("s" if len(entries) != 1 else "")
        self.notice(f"── history {of}: the last {count} ──")
        return True

    def history(self, peer, entries):
        if not self._history_header(entries, f"with {escape(peer)}"):
            return
        for entry in entries:
            clock = _when(entry.time_ms)
            if entry.sent:
                self._print(self._conversation(clock, "", entry.text, recipient=peer, old=True))
            else:
                self._print(self._conversation(clock, peer, entry.text, old=True))

    def room_message(self, message, mine):
        clock = _when(message.time_ms)
        lines = self._conversation(clock, message.sender, message.text, room=message.room)
        if self._bell and not mine:
            lines[-1] += "\a"
        self._print(lines)

    def room_event(self, event):
        self.notice(f"{escape(event.room)}: {describe(event)}")

    def rooms(self, entries):
        if not entries:
            self.notice("(no rooms yet: join #NAME makes one)")
        for entry in entries:
            traits = [f"{entry.members} member" + ("s" if entry.members != 1 else "")]
            traits += [word for flag, word in _ROOM_TRAITS if flag in entry.flags]
            print(f"{escape(entry.name)} " + dim(f"({', '.join(traits)})"), flush=True)

    def members(self, room, members):
        for name, flags in members:
            mark = "●" if MemberFlag.ONLINE in flags else "○"
            owner = dim(" (owner)") if MemberFlag.OWNER in flags else ""
            print(f"{mark} {escape(name)}{owner}", flush=True)

    def topic(self, room, topic):
        print(f"{escape(room)}: {escape(topic)}" if topic else dim(f"{escape(room)} has no topic"), flush=True)

    def room_history(self, room, entries):
        if not self._history_header(entries, f"of {escape(room)}"):
            return
        for entry in entries:
            self._print(self._conversation(_when(entry.time_ms), entry.sender, entry.text, old=True, room=room))

    def search_results(self, found, me):
        if not found:
            self.notice("(nothing found)")
            return
        self.notice(f"── {len(found)} found, newest first ──")
        for entry in found:
            clock = _when(entry.time_ms)
            if entry.conversation.startswith("#"):
                lines = self._conversation(clock, entry.sender, entry.text, old=True, room=entry.conversation)
            elif entry.sender == me:
                lines = self._conversation(clock, "", entry.text, recipient=entry.conversation, old=True)
            else:
                lines = self._conversation(clock, entry.sender, entry.text, old=True)
            self._print(lines)

    def own_message(self, message):
        self._print(self._conversation(_when(message.time_ms), "", message.text, recipient=message.recipient))

    def unread(self, entries):
        counts = ", ".join(
            f"{escape(e.conversation)} {e.count}{'+' if e.count >= MOST_COUNTED else ''}" for e in entries
        )
        self.notice(f"while you were away: {counts}")

    def sessions(self, entries):
        for entry in entries:
            this = " " + dim("(this one)") if entry.flags & SessionFlag.THIS else ""
            since = _when(entry.since_ms)
            print(
                f"{entry.number}  {escape(entry.transport)}  {escape(entry.address)}  since {since}{this}", flush=True
            )

    def notice(self, text):
        print(dim(text), flush=True)

    def warning(self, text):
        self.notice(text)


def _when(time_ms: int) -> str:
    """HH:MM for today, else the date too."""
    moment = local_time(time_ms)
    if moment is None:
        return "??:??"
    return moment.strftime("%H:%M" if moment.date() == datetime.date.today() else "%Y-%m-%d %H:%M")


_ROOM_TRAITS = ((RoomFlag.MEMBER, "member"), (RoomFlag.OWNER, "owner"), (RoomFlag.INVITE_ONLY, "invite-only"))
_EVENT_WORDS = {
    EventKind.JOINED: "{actor} joined",
    EventKind.PARTED: "{actor} left",
    EventKind.REMOVED: "{actor} removed {detail}",
    EventKind.TOPIC: "{actor} set the topic: {detail}",
    EventKind.INVITE_ONLY: "{actor} made it invite-only: {detail}",
    EventKind.OWNER: "{actor} handed it to {detail}",
    EventKind.INVITED: "{actor} invited {detail}",
}


def describe(event) -> str:
    """A room event in words, escaped; a member out at its logout says how, and a room that
    had no owner is its first registered member's (see EventKind)."""
    words = _EVENT_WORDS[event.kind] + (" ({detail})" if event.kind is EventKind.PARTED and event.detail else "")
    if event.kind is EventKind.OWNER and event.detail == event.actor:
        words = "{actor} owns it now"
    return words.format(actor=escape(event.actor), detail=escape(event.detail))
