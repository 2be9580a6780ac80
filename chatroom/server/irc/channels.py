"""Rooms as IRC channels, for :class:`~.client.IrcClient`: JOIN, PART, NAMES, TOPIC, and
PRIVMSG to a channel, over the room requests; the numerics for what goes wrong.

A mixin: the IrcClient holds the state (its rules, its nickname) and the numerics.
"""

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import gevent

from ...protocol import Reason, Response, Status
from ...room_frames import (
    GiveRoom,
    Invite,
    Join,
    Kick,
    ListMembers,
    ListRooms,
    MemberFlag,
    MemberList,
    Part,
    RoomFlag,
    RoomList,
    SetInviteOnly,
    SetTopic,
)
from .lines import MAX_LINE, encode_line, in_lines
from .nicks import source_of, source_of_nick, to_channel, to_name, to_nick, to_room, to_room_among
from .room_events import join_line
from .translate import OFFLINE_AWAY, away_line, irc_frame

# What a refused room request becomes: (numeric, its text).
_REFUSALS = {
    Reason.INVALID_ROOM: ("403", "No such channel"),
    Reason.NO_SUCH_ROOM: ("403", "No such channel"),
    Reason.LOOKS_LIKE: ("403", "No such channel (it looks like another one)"),
    Reason.NOT_A_MEMBER: ("442", "You're not on that channel"),
    Reason.NOT_OWNER: ("482", "You're not channel operator (its owner)"),
    Reason.INVITE_ONLY: ("473", "Cannot join channel (+i)"),
    Reason.ROOM_FULL: ("471", "Cannot join channel (+l)"),
    Reason.TOO_MANY_ROOMS: ("405", "You have joined too many channels"),
    Reason.INVALID_TEXT: ("412", "No text to send"),
    Reason.NOT_ONLINE: ("401", "No such nick"),
    Reason.NOT_REGISTERED: ("482", "Only a registered member can own it"),
}


class ChannelCommands:
    if TYPE_CHECKING:  # what IrcClient holds and does
        from ..rules import Rules
        from .welcome import Unwelcomed

        nick: str
        caps: set[str]
        echo_labels: dict[str, list[str]]
        channels: set[str]
        away_known: set[str]
        unwelcomed: Unwelcomed | None
        _label: str | None
        _rules: Rules
        _answer_later: Callable[[Callable[[], bytes]], None]

        def _numeric(self, numeric: str, *params: str) -> bytes: ...

        def _line(self, numeric: str, *params: str) -> bytes: ...

        def _ask(self, request): ...

        def _sent(self, name: str, text: str, raw: bytes) -> Response: ...

        def markread_line(self, conversation: str, marker: int) -> bytes: ...

        def replays(self) -> bool: ...

        def replay_missed(self, room: str, channel: str, marker: int, count: int, upto: int | None) -> bytes: ...

        def unread(self) -> dict[str, tuple[int, int]]: ...

    def _no_such_channel(self, channel: str) -> bytes:
        return self._numeric("403", channel, ":No such channel")

    def _refusal(self, answer: Response, channel: str) -> bytes:
        numeric, text = _REFUSALS.get(answer.reason, ("403", "No such channel"))  # type: ignore[arg-type]
        if numeric == "412":
            return self._numeric(numeric, ":" + text)
        return self._numeric(numeric, channel, ":" + text)

    def _join(self, params) -> bytes:
        if not params or not params[0]:
            return self._numeric("461", "JOIN", ":Not enough parameters")
        if params[0] == "0":  # (RFC 2812: leave every channel)
            return b"".join(self._part_one(to_channel(room), []) for room in sorted(self.channels))
        return b"".join(self._join_one(channel) for channel in params[0].split(","))

    def _join_one(self, channel: str) -> bytes:
        room = to_room(channel)
        if room is None:
            return self._no_such_channel(channel)
        if room in self.channels:
            return b""  # (joined already: at login, or from another of the user's devices)
        self._rules.hold_pushes()  # (the channel's messages, once it is joined, follow its JOIN line)
        self.channels.add(room)  # (before the JOINED event can come back: see translate)
        answer = self._ask(Join(room))
        if answer.reason is Reason.LOOKS_LIKE and answer.detail.casefold() == room.casefold():
            # The room under another case, which an IRC client takes for the same channel:
            # joined under its own name (the JOIN line tells the client which).
            self.channels.discard(room)
            room, channel = answer.detail, to_channel(answer.detail)
            if room in self.channels:
                return b""
            self.channels.add(room)
            answer = self._ask(Join(room))
        if answer.status is not Status.OK:
            self.channels.discard(room)
            return self._refusal(answer, channel)
        return self._joined_lines(room, channel, self._marks(), self._replayed_upto(room))

    def rejoin(self) -> bytes:
        """(At the welcome.) The channels the user is a member of already, joined here."""
        listed = self._ask(ListRooms())
        entries = listed.rooms if type(listed) is RoomList else ()
        rooms = [entry.name for entry in entries if entry.flags & RoomFlag.MEMBER]
        self.channels.update(rooms)
        upto = {room: self._replayed_upto(room) for room in rooms}
        if self.unwelcomed is not None:  # (what was held for the welcome follows it, less what it shows)
            self.unwelcomed.replayed_upto = upto
        marks = self._marks()  # (once for them all)
        return b"".join(self._joined_lines(room, to_channel(room), marks, upto[room]) for room in rooms)

    def _replayed_upto(self, room: str) -> int | None:
        """(Read once the client is a member, before anything waits.) The room's last message
        now: a replay of what the user missed stops at it, and what comes after comes live."""
        return self._rules.last_message_id(room) if self.replays() else None

    def _marks(self) -> dict[str, tuple[int, int]]:
        """The user's markers and unread counts, if a channel's joining tells of them."""
        return self.unread() if "draft/read-marker" in self.caps or self.replays() else {}

    def _joined_lines(self, room: str, channel: str, marks: dict[str, tuple[int, int]], upto: int | None) -> bytes:
        """What a client is told of a channel it joins: JOIN, the topic, the names (and its
        read marker, and what it missed up to message ``upto``: from ``marks``, see _marks)."""
        marker, count = marks.get(room, (0, 0))
        name = self._rules.name
        assert name is not None  # (joining takes a registered client)
        joined = join_line(name, channel, self)  # type: ignore[arg-type]
        if "draft/read-marker" in self.caps:
            joined += self.markread_line(room, marker)
        state = self._state_lines(self._members(room), channel)
        missed = self.replay_missed(room, channel, marker, count, upto) if self.replays() else b""
        return irc_frame(joined) + state + missed

    def joined_elsewhere(self, room: str) -> None:
        """(translate) Another of the user's devices joined room: its topic and names follow
        the JOIN, as after a JOIN of the client's own (an IRC client learns a channel's members
        from them alone), read in a greenlet of their own (a cluster's members are in Redis)."""
        gevent.spawn(self._answer_later, partial(self._state_joined_elsewhere, room))

    def _state_joined_elsewhere(self, room: str) -> bytes:
        members = self._members(room)
        if members is None or room not in self.channels:  # (still: the read may have waited)
            return b""
        return self._state_lines(members, to_channel(room))

    def _state_lines(self, members: MemberList | None, channel: str) -> bytes:
        """What follows a JOIN: the channel's topic, its names, and (away-notify) who of them
        has no session, from one read of its members."""
        topic = self._topic_lines(members, channel, quiet=True)
        return topic + self._names_lines(members, channel) + self._offline_lines(members)

    def _offline_lines(self, members: MemberList | None) -> bytes:
        """(away-notify) The members of a channel joined who have no session, as away (see
        translate.OFFLINE_AWAY), where the client has not been told so: IRC has no member
        who is not on."""
        if members is None or "away-notify" not in self.caps:
            return b""
        offline = [to_nick(name) for name, flags in members.members if not flags & MemberFlag.ONLINE]
        lines = [away_line(nick, OFFLINE_AWAY, self.away_known) for nick in offline if nick not in self.away_known]
        return irc_frame(b"".join(lines)) if lines else b""

    def _part(self, params) -> bytes:
        if not params or not params[0]:
            return self._numeric("461", "PART", ":Not enough parameters")
        return b"".join(self._part_one(channel, params[1:2]) for channel in params[0].split(","))

    def _part_one(self, channel: str, reason: list[str]) -> bytes:
        room = to_room_among(channel, self.channels)
        if room is None:
            return self._no_such_channel(channel)
        was_in = room in self.channels
        self.channels.discard(room)
        answer = self._ask(Part(room))
        if answer.status is not Status.OK:
            if was_in:
                self.channels.add(room)
            return self._refusal(answer, channel)
        return irc_frame(encode_line("PART", channel, *reason, source=source_of_nick(self.nick)))

    def _names(self, params) -> bytes:
        if not params or not params[0]:
            return self._numeric("366", "*", ":End of /NAMES list")
        out = []
        for channel in params[0].split(","):
            room = to_room_among(channel, self.channels)
            names = self._names_lines(self._members(room), channel) if room else None
            out.append(names or self._numeric("366", channel, ":End of /NAMES list"))
        return b"".join(out)

    def _topic(self, params) -> bytes:
        if not params or not params[0]:
            return self._numeric("461", "TOPIC", ":Not enough parameters")
        channel = params[0]
        room = to_room_among(channel, self.channels)
        if room is None:
            return self._no_such_channel(channel)
        if len(params) < 2:
            return self._topic_lines(self._members(room), channel)
        answer = self._ask(SetTopic(room, params[1]))
        return b"" if answer.status is Status.OK else self._refusal(answer, channel)  # (TOPIC comes to all)

    def _to_channel(self, channel: str, text: str, notice: bool) -> bytes:
        room = to_room_among(channel, self.channels)
        if room is None:
            return b"" if notice else self._no_such_channel(channel)
        labeled_echo = self._label is not None and "echo-message" in self.caps
        if labeled_echo:  # (the echo is the labeled answer: translate tags it, whenever it comes)
            self.echo_labels.setdefault(room, []).append(self._label)  # type: ignore[arg-type]
        answer = self._sent(room, text, b"")
        if labeled_echo:
            if answer.status is Status.OK:
                self._label = None
            else:
                self.echo_labels[room].pop()
        if notice or answer.status is Status.OK:
            return b""
        if answer.reason is Reason.NOT_A_MEMBER:
            return self._numeric("404", channel, ":Cannot send to channel")
        return self._refusal(answer, channel)

    def _list(self, params) -> bytes:
        """LIST, or LIST #a,#b: those of them the user may see."""
        answer = self._ask(ListRooms())
        lines = [self._line("321", "Channel", "Users  Name")]
        asked = None  # (every room), or those named, in any case
        if params and params[0]:
            asked = {room.casefold() for channel in params[0].split(",") if (room := to_room(channel))}
        if type(answer) is RoomList:
            for entry in answer.rooms:
                if asked is None or entry.name.casefold() in asked:
                    lines.append(self._line("322", to_channel(entry.name), str(entry.members), ""))
        lines.append(self._line("323", "End of /LIST"))
        return irc_frame(b"".join(lines))

    def _kick(self, params) -> bytes:
        if len(params) < 2:
            return self._numeric("461", "KICK", ":Not enough parameters")
        return self._as_owner(params[0], params[1], Kick)  # (the KICK itself comes to every member)

    def _invite(self, params) -> bytes:
        if len(params) < 2:
            return self._numeric("461", "INVITE", ":Not enough parameters")
        nick, channel = params[0], params[1]
        refused = self._as_owner(channel, nick, Invite)
        return refused or irc_frame(self._line("341", nick, channel))

    def _mode(self, params) -> bytes:
        if not params:
            return self._numeric("461", "MODE", ":Not enough parameters")
        target = params[0]
        if not target.startswith("#"):
            if target != self.nick:  # (user modes: none here)
                return self._numeric("502", ":Cant change mode for other users")
            return irc_frame(self._line("221", "+"))
        room = to_room_among(target, self.channels)
        members = self._members(room) if room else None
        if room is None or members is None:
            return self._no_such_channel(target)
        if len(params) == 1:
            listed = self._ask(ListRooms())
            invite_only = type(listed) is RoomList and any(
                entry.name == room and entry.flags & RoomFlag.INVITE_ONLY for entry in listed.rooms
            )
            return irc_frame(self._line("324", target, "+i" if invite_only else "+"))
        change = params[1]
        if change in ("+i", "-i"):
            answer = self._ask(SetInviteOnly(room, change == "+i"))
            return b"" if answer.status is Status.OK else self._refusal(answer, target)
        if change == "+o" and len(params) > 2:  # (an owner hands the room on)
            return self._as_owner(target, params[2], GiveRoom)
        if change in ("b", "+b"):
            return irc_frame(self._line("368", target, "End of channel ban list"))
        return self._numeric("472", change.lstrip("+-")[:1] or "?", ":is unknown mode char to me")

    def _as_owner(self, channel: str, nick: str, request) -> bytes:
        """An owner's request about nick in channel; b"" once done, else its numeric."""
        room, name = to_room_among(channel, self.channels), to_name(nick)
        if room is None:
            return self._no_such_channel(channel)
        if name is None:
            return self._numeric("401", nick, ":No such nick/channel")
        answer = self._ask(request(room, name))
        if answer.status is Status.OK:
            return b""
        members = self._members(room) if answer.reason is Reason.NOT_A_MEMBER else None
        if members is not None:
            names = {member for member, _flags in members.members}
            if self._rules.name not in names:  # (it is the one asking who is not on the channel)
                return self._refusal(answer, channel)
            if request is GiveRoom and name in names:
                numeric, text = _REFUSALS[Reason.NOT_REGISTERED]  # (a member, but not a registered one)
                return self._numeric(numeric, channel, ":" + text)
            return self._numeric("441", nick, channel, ":They aren't on that channel")
        if answer.reason is Reason.ROOM_FULL and request is Invite:  # (its invitations, not its members)
            return self._numeric("478", channel, "I", ":Channel invite list is full")
        return self._refusal(answer, channel)

    # --- Replies with a room's state --------------------------------------------------

    def _members(self, room: str):
        answer = self._ask(ListMembers(room))
        return answer if type(answer) is MemberList else None

    def _topic_lines(self, members: MemberList | None, channel: str, quiet: bool = False) -> bytes:
        if members is None:
            return self._no_such_channel(channel)
        if members.topic:
            return irc_frame(self._line("332", channel, members.topic))
        return b"" if quiet else irc_frame(self._line("331", channel, "No topic is set"))

    def _names_lines(self, members: MemberList | None, channel: str) -> bytes:
        lines = []
        if members is not None:
            who = source_of if "userhost-in-names" in self.caps else to_nick
            names = [("@" if flags & MemberFlag.OWNER else "") + who(name) for name, flags in members.members]
            room_left = MAX_LINE - len(self._line("353", "=", channel, ""))
            lines += [self._line("353", "=", channel, part) for part in in_lines(names, room_left)]
        lines.append(self._line("366", channel, "End of /NAMES list"))
        return irc_frame(b"".join(lines))
