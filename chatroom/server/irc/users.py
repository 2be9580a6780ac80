"""Who is there, for :class:`~.client.IrcClient`: WHOIS, WHO, ISON, USERHOST, and AWAY (the
chatroom's away, which those sharing a conversation or a room with the user see).

A mixin: the IrcClient holds the state (its rules, its nickname) and the numerics.
"""

from typing import TYPE_CHECKING

from ...device_frames import MAX_AWAY_CHARS, Away
from ...protocol import ListUsers, UserList
from ...room_frames import MemberFlag
from .lines import MAX_LINE, in_lines
from .nicks import ASCII_LOWER, SERVER_NAME, source_of, to_channel, to_name, to_nick, to_room_among
from .translate import OFFLINE_AWAY, irc_frame, own_away_line


class UserQueries:
    if TYPE_CHECKING:  # what IrcClient holds and does
        from ...room_frames import MemberList
        from ..rules import Rules

        nick: str
        channels: set[str]
        _rules: Rules
        away_shown: bool

        def _numeric(self, numeric: str, *params: str) -> bytes: ...

        def _line(self, numeric: str, *params: str) -> bytes: ...

        def _members(self, room: str) -> MemberList | None: ...

        def _ask(self, request): ...

    def _online(self) -> set[str]:
        listed = self._ask(ListUsers())
        return set(listed.names) if type(listed) is UserList else set()

    def _online_ignoring_case(self, name: str) -> str | None:
        """The one name online equal to name ignoring ASCII case (IRC's CASEMAPPING=ascii),
        if there is exactly one: chatroom names differing in case are different users."""
        folded = name.translate(ASCII_LOWER)
        alike = [online for online in self._online() if online.translate(ASCII_LOWER) == folded]
        return alike[0] if len(alike) == 1 else None

    def _whois(self, params) -> bytes:
        if not params:
            return self._numeric("431", ":No nickname given")
        nick = params[-1]
        name = to_name(nick)
        end = self._line("318", nick, "End of /WHOIS list")
        online = name is not None and name in self._online()
        if name is not None and not online:
            alike = self._online_ignoring_case(name)
            if alike is not None:
                name, online = alike, True
            elif not self._rules.registered_name(name):
                name = None  # (a registered user with no session is there all the same, away)
        if name is None:
            return irc_frame(self._line("401", nick, "No such nick/channel") + end)
        lines = [self._line("311", nick, nick, SERVER_NAME, "*", name)]
        room_left = MAX_LINE - len(self._line("319", nick, ""))
        lines += [self._line("319", nick, part) for part in in_lines(self._shared_channels(name), room_left)]
        lines.append(self._line("312", nick, SERVER_NAME, "chatroom"))
        if self._rules.registered_name(name):
            lines.append(self._line("330", nick, name, "is logged in as"))
        away = self._rules.away_message(name) if online else OFFLINE_AWAY
        if away is not None:
            lines.append(self._line("301", nick, away or "Away"))
        lines.append(end)
        return irc_frame(b"".join(lines))

    def _shared_channels(self, name: str) -> list[str]:
        """The channels both this client and name are in (@ where name owns it): WHOIS tells
        no more of anyone's rooms."""
        shared = []
        for room in sorted(self.channels):
            members = self._members(room)
            flags = next((flags for member, flags in members.members if member == name), None) if members else None
            if flags is not None:
                shared.append(("@" if flags & MemberFlag.OWNER else "") + to_channel(room))
        return shared

    def _ison(self, params) -> bytes:
        """ISON nick...: those of them online, as asked (irssi's notify list asks every minute)."""
        if not params:
            return self._numeric("461", "ISON", ":Not enough parameters")
        online = {name.translate(ASCII_LOWER) for name in self._online()}
        there = [
            nick
            for nick in " ".join(params).split()
            if (name := to_name(nick)) is not None and name.translate(ASCII_LOWER) in online
        ]
        return self._numeric("303", ":" + " ".join(there))

    def _userhost(self, params) -> bytes:
        """USERHOST nick...: nick=+user@host of each online (- for away), five at most."""
        if not params:
            return self._numeric("461", "USERHOST", ":Not enough parameters")
        online = self._online()
        replies = []
        for nick in params[:5]:
            name = to_name(nick)
            if name is not None and name not in online:
                name = self._online_ignoring_case(name)
            if name is not None:
                away = "-" if self._rules.away_message(name) is not None else "+"
                replies.append(f"{to_nick(name)}={away}{source_of(name).partition('!')[2]}")
        return self._numeric("302", ":" + " ".join(replies))

    def _who(self, params) -> bytes:
        mask = params[0] if params else "*"
        lines = []
        if mask.startswith("#"):
            room = to_room_among(mask, self.channels)
            members = self._members(room) if room else None
            # Every member, as NAMES has them: one offline (a registered member stays one) or
            # away is "G", gone, as IRC clients mark the away.
            for name, flags in members.members if members else ():
                here = flags & MemberFlag.ONLINE and self._rules.away_message(name) is None
                lines.append(self._who_line(mask, to_nick(name), name, flags & MemberFlag.OWNER, here))
        else:
            person = to_name(mask)
            if person is not None and person in self._online():
                lines.append(self._who_line("*", mask, person, False, self._rules.away_message(person) is None))
        lines.append(self._line("315", mask, "End of /WHO list"))
        return irc_frame(b"".join(lines))

    def _who_line(self, channel: str, nick: str, name: str, owner, here) -> bytes:
        flags = ("H" if here else "G") + ("@" if owner else "")
        return self._line("352", channel, nick, SERVER_NAME, SERVER_NAME, nick, flags, f"0 {name}")

    def _away(self, params) -> bytes:
        message = params[0][:MAX_AWAY_CHARS] if params and params[0] else None
        self._rules.answer(Away(message is not None, message or ""))
        self.away_shown = message is not None
        return irc_frame(own_away_line(self.nick, self.away_shown))
