"""The history and read markers of the devices work, for :class:`~.client.IrcClient`:
IRCv3's CHATHISTORY (draft/chathistory) and MARKREAD (draft/read-marker), and the replay of
what a client without chathistory missed in a channel, when it joins it.

A mixin: the IrcClient holds the state (its rules, its nickname, its capabilities).

IRC speaks of messages by time (``timestamp=``) or id (``msgid=``, the chatroom id): a direct
message's id holds its time (see message_ids), a room's ids count up, so a time is matched
against the messages themselves. A request reads at most SCAN_PAGES pages of the history,
newest first: what lies further back is out of its reach (docs/irc.md).
"""

import calendar
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ...device_frames import Mark, Unread, UnreadCounts
from ...fields import at_most_most_id
from ...protocol import HistoryPage, HistoryRequest
from ...room_frames import RoomHistory
from ..message_ids import first_id_at, time_of_id
from .batches import batch
from .lines import encode_line
from .marker_times import markread_line
from .nicks import SERVER_NAME, source_of, to_channel, to_name, to_nick, to_room
from .tags import id_of_msgid, irc_time, tags_for
from .translate import irc_frame, privmsg_lines

MOST_ASKED = 100  # messages one CHATHISTORY answers with (ISUPPORT CHATHISTORY)
PAGE = 500
SCAN_PAGES = 4
REPLAYED = 50  # at most, of what a client without chathistory missed in a channel
MOST_TARGETS = 100  # conversations TARGETS looks at
_SUBCOMMANDS = {"LATEST": 3, "BEFORE": 3, "AFTER": 3, "AROUND": 3, "BETWEEN": 4, "TARGETS": 3}


class _Entry(NamedTuple):
    id: int
    time_ms: int
    sender: str
    text: str


class _Ref(NamedTuple):
    """A message reference: by id or by time; ``value`` compared with an entry's."""

    by_id: bool
    value: int

    def key(self, entry: _Entry) -> int:
        return entry.id if self.by_id else entry.time_ms


def _parse_ref(text: str) -> _Ref | None:
    kind, _, value = text.partition("=")
    if kind == "msgid" and (number := id_of_msgid(value)) is not None:
        return _Ref(True, at_most_most_id(number))
    if kind == "timestamp":
        moment = parse_irc_time(value)
        return None if moment is None else _Ref(False, moment)
    return None


def parse_irc_time(text: str) -> int | None:
    """A server-time (YYYY-MM-DDThh:mm:ss.sssZ) in ms; None if it is not one."""
    try:
        whole, _, fraction = text.removesuffix("Z").partition(".")
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        return seconds * 1000 + (int(fraction[:3].ljust(3, "0")) if fraction else 0)
    except ValueError:
        return None


class HistoryCommands:
    if TYPE_CHECKING:  # what IrcClient holds and does
        from ..rules import Rules

        nick: str
        caps: set[str]
        _rules: Rules

        def _ask(self, request): ...

    # --- CHATHISTORY --------------------------------------------------------------------

    def _chathistory(self, params) -> bytes:
        sub = params[0].upper() if params else ""
        if sub not in _SUBCOMMANDS:
            return self._fail("CHATHISTORY", "INVALID_PARAMS", sub or "*", "Unknown command")
        if len(params) != 1 + _SUBCOMMANDS[sub]:
            return self._fail("CHATHISTORY", "INVALID_PARAMS", sub, "Wrong number of parameters")
        if not params[-1].isdigit() or not 0 < int(params[-1]):
            return self._fail("CHATHISTORY", "INVALID_PARAMS", sub, params[-1], "Invalid limit")
        limit = min(int(params[-1]), MOST_ASKED)
        if sub == "TARGETS":
            return self._targets(params[1], params[2], limit)
        target = params[1]
        conversation = to_room(target) if target.startswith("#") else to_name(target)
        every = sub == "LATEST" and params[2] == "*"
        refs = [] if every else [_parse_ref(text) for text in params[2:-1]]
        if None in refs or len({ref.by_id for ref in refs if ref is not None}) > 1:  # (BETWEEN: one kind)
            return self._fail("CHATHISTORY", "INVALID_PARAMS", sub, params[2], "Invalid message reference")
        if conversation is None:
            return self._fail("CHATHISTORY", "INVALID_TARGET", sub, target, "Messages could not be retrieved")
        chosen = _choose(sub, refs, limit)
        before = refs[0].value if sub == "BEFORE" and refs[0].by_id else 0  # type: ignore[union-attr]
        entries = self._history(conversation, chosen.enough, before)
        if entries is None:
            return self._fail("CHATHISTORY", "INVALID_TARGET", sub, target, "Messages could not be retrieved")
        return irc_frame(b"".join(self._history_lines(conversation, target, chosen.pick(entries))))

    def _history(
        self, conversation: str, enough: Callable[[list[_Entry]], bool], before: int = 0, page_size: int = PAGE
    ):
        """The conversation's messages (oldest first), read back from before (0: the newest)
        until ``enough`` of them are in, or the scan's reach is; None if it has no history
        for this user (not registered, not a member)."""
        entries: list[_Entry] = []
        for _ in range(SCAN_PAGES):
            page = self._ask(HistoryRequest(conversation, page_size, before))
            if type(page) is HistoryPage:
                me = self._rules.name or ""
                older = [_Entry(e.id, e.time_ms, me if e.sent else conversation, e.text) for e in page.entries]
            elif type(page) is RoomHistory:
                older = [_Entry(e.id, e.time_ms, e.sender, e.text) for e in page.entries]
            else:
                return None if not entries else entries
            entries[:0] = older
            if len(older) < page_size or enough(entries):
                break
            before = older[0].id
        return entries

    def _history_lines(self, conversation: str, target: str, entries: list[_Entry]) -> list[bytes]:
        """The entries as the PRIVMSG lines they were (one's own from one's nickname), in a
        chathistory batch for a client that takes batches."""
        lines = []
        me = self._rules.name
        for entry in entries:
            to = target if conversation.startswith("#") or entry.sender == me else self.nick
            tags = tags_for(self, entry.time_ms, entry.id, entry.sender, target)  # type: ignore[arg-type]
            lines += privmsg_lines(source_of(entry.sender), to, entry.text, tags)
        if "batch" not in self.caps:
            return lines
        return batch("chathistory", (target,), lines)

    def _targets(self, first: str, second: str, limit: int) -> bytes:
        bounds = [_parse_ref(first), _parse_ref(second)]
        if any(ref is None or ref.by_id for ref in bounds):
            return self._fail("CHATHISTORY", "INVALID_PARAMS", "TARGETS", first, "Invalid timestamp")
        low, high = sorted(ref.value for ref in bounds if ref is not None)
        latest = []
        for conversation in list(self.unread())[:MOST_TARGETS]:
            newest = self._history(conversation, lambda _: True, page_size=1)
            if newest and low < newest[-1].time_ms < high:
                latest.append((newest[-1].time_ms, conversation))
        lines = [
            encode_line("CHATHISTORY", "TARGETS", _target(conversation), irc_time(moment), text=False)
            for moment, conversation in sorted(latest)[:limit]
        ]
        if "batch" in self.caps:
            lines = batch("draft/chathistory-targets", (), lines)
        return irc_frame(b"".join(lines))

    # --- MARKREAD -----------------------------------------------------------------------

    def _markread(self, params) -> bytes:
        if not params:
            return self._fail("MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")
        target = params[0]
        conversation = to_room(target) if target.startswith("#") else to_name(target)
        if conversation is None:
            return self._fail("MARKREAD", "INVALID_PARAMS", target, "Invalid parameters")
        if len(params) > 1:
            ref = _parse_ref(params[1])
            if ref is None or ref.by_id:
                return self._fail("MARKREAD", "INVALID_PARAMS", params[1], "Invalid parameters")
            moment = min(ref.value, int(time.time() * 1000))  # (never past now)
            marked = self._ask(Mark(conversation, self._last_id_by(conversation, moment)))
            if getattr(marked, "reason", None) is not None:
                return self._fail("MARKREAD", "INTERNAL_ERROR", target, "The read timestamp could not be set")
        marker, _ = self.unread().get(conversation, (0, 0))
        return irc_frame(self.markread_line(conversation, marker))

    def markread_line(self, conversation: str, marker: int) -> bytes:
        """MARKREAD with the conversation's marker (``*`` for none)."""
        moment = None
        if marker and conversation.startswith("#"):
            found = self._history(conversation, lambda _: True, marker + 1, page_size=1)
            moment = found[-1].time_ms if found and found[-1].id == marker else None
        elif marker:
            moment = time_of_id(marker)
        return markread_line(_target(conversation), moment)

    def _last_id_by(self, conversation: str, moment: int) -> int:
        """The id of the conversation's last message at or before moment (ms) (0: none)."""
        if not conversation.startswith("#"):
            return at_most_most_id(first_id_at(moment + 1) - 1)
        entries = self._history(conversation, lambda got: got[0].time_ms <= moment) or []
        return max((entry.id for entry in entries if entry.time_ms <= moment), default=0)

    # --- Replay -------------------------------------------------------------------------

    def replays(self) -> bool:
        """Whether what a channel's newcomer missed is replayed to this client (one without
        draft/chathistory, whose user has a history)."""
        return "draft/chathistory" not in self.caps and self._rules.is_registered

    def replay_missed(self, room: str, channel: str, marker: int, count: int, upto: int | None) -> bytes:
        """What came to the channel after the user's marker (``count`` of it), up to REPLAYED
        messages, and up to the message of id ``upto``: those after it came to the client live
        (None: to the newest)."""
        if not count:
            return b""
        before = upto + 1 if upto is not None else 0
        entries = self._history(room, lambda got: got[0].id <= marker, before) or []
        missed = [entry for entry in entries if entry.id > marker][-REPLAYED:]
        return irc_frame(b"".join(self._history_lines(room, channel, missed)))

    def unread(self) -> dict[str, tuple[int, int]]:
        """Each conversation's marker (0: none) and how many came after it, of the user's with a
        marker or something unread (none for a user without history)."""
        counts = self._ask(Unread())
        entries = counts.entries if type(counts) is UnreadCounts else ()
        return {entry.conversation: (entry.marker, entry.count) for entry in entries}

    def _fail(self, command: str, code: str, *context: str) -> bytes:
        """A standard reply: FAIL command code [context...] :description (the last)."""
        return irc_frame(encode_line("FAIL", command, code, *context, source=SERVER_NAME))


def _target(conversation: str) -> str:
    return to_channel(conversation) if conversation.startswith("#") else to_nick(conversation)


class _Choice(NamedTuple):
    enough: Callable[[list[_Entry]], bool]  # whether the entries read reach far enough back
    pick: Callable[[list[_Entry]], list[_Entry]]  # the answer, from the entries read


def _choose(sub: str, refs: list, limit: int) -> _Choice:
    """How a subcommand reads and picks from the history (oldest first)."""
    if not refs:  # LATEST *
        return _Choice(lambda got: len(got) >= limit, lambda got: got[-limit:])
    ref = refs[0]
    reached = lambda got: ref.key(got[0]) <= ref.value  # noqa: E731 (read back past the reference)
    if sub == "LATEST":
        return _Choice(reached, lambda got: [e for e in got if ref.key(e) > ref.value][-limit:])
    if sub == "BEFORE":
        older = lambda got: [e for e in got if ref.key(e) < ref.value]  # noqa: E731
        return _Choice(lambda got: len(older(got)) >= limit, lambda got: older(got)[-limit:])
    if sub == "AFTER":
        return _Choice(reached, lambda got: [e for e in got if ref.key(e) > ref.value][:limit])
    if sub == "AROUND":

        def around(got):
            before = [e for e in got if ref.key(e) < ref.value][-(limit // 2) :] if limit > 1 else []
            return before + [e for e in got if ref.key(e) >= ref.value][: limit - len(before)]

        return _Choice(lambda got: reached(got) and len([e for e in got if ref.key(e) < ref.value]) >= limit, around)
    first, second = refs  # BETWEEN (two references of one kind): forwards or backwards in time
    low, high = sorted((first, second), key=lambda r: r.value)
    inside = lambda got: [e for e in got if low.key(e) > low.value and high.key(e) < high.value]  # noqa: E731
    forwards = first is low
    return _Choice(
        lambda got: low.key(got[0]) <= low.value,
        lambda got: inside(got)[:limit] if forwards else inside(got)[-limit:],
    )
