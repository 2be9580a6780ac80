"""What IRC clients ask of the server itself, for :class:`~.client.IrcClient`: LUSERS, MOTD,
VERSION, TIME, INFO, ADMIN, STATS, LINKS, HELP, the operator's commands a chatroom has no
operator for (OPER, KILL, WALLOPS), WHOWAS, which it keeps nothing for, and USERS and SUMMON,
which RFC 2812 lets a server disable.

irssi and WeeChat have a command for each (`/version`, `/time`, ...): each gets the answer
RFC 2812 and the modern IRC documentation give, never 421 as if it were a typo.

A mixin: the IrcClient holds the state (its nickname) and the numerics.
"""

import time
from typing import TYPE_CHECKING

from ... import __version__
from .nicks import SERVER_NAME
from .translate import irc_frame

VERSION_STRING = f"chatroom-{__version__}"
STARTED = time.time()  # (when the server, which imports this once, started)


class ServerQueries:
    if TYPE_CHECKING:  # what IrcClient holds and does

        def _numeric(self, numeric: str, *params: str) -> bytes: ...

        def _line(self, numeric: str, *params: str) -> bytes: ...

        def _online(self) -> set[str]: ...

        def _isupport(self) -> bytes: ...

        def _commands(self) -> list[str]: ...

    def _lusers(self, _params) -> bytes:
        count = len(self._online())
        lines = [
            self._line("251", f"There are {count} users and 0 invisible on 1 servers"),
            self._line("255", f"I have {count} clients and 1 servers"),
        ]
        return irc_frame(b"".join(lines))

    def _motd(self, _params) -> bytes:
        return self._numeric("422", ":MOTD File is missing")

    def _version(self, _params) -> bytes:
        """351, then what 005 says, as after registration (the modern IRC documentation)."""
        return self._numeric("351", VERSION_STRING, SERVER_NAME, ":the chatroom server's IRC port") + self._isupport()

    def _time(self, _params) -> bytes:
        # (RFC 2812's form, as Ergo sends it: the modern one's timestamp and offset, between
        # the server and the text, are shown raw by WeeChat 3.8.)
        return self._numeric("391", SERVER_NAME, ":" + time.strftime("%A %B %d %Y -- %H:%M:%S +00:00", time.gmtime()))

    def _info(self, _params) -> bytes:
        lines = [
            self._line("371", f"{VERSION_STRING}: a chat server of users, rooms and direct messages"),
            self._line("371", f"Started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(STARTED))}"),
            self._line("374", "End of INFO list"),
        ]
        return irc_frame(b"".join(lines))

    def _admin(self, _params) -> bytes:
        return self._numeric("423", SERVER_NAME, ":No administrative info available")

    def _stats(self, params) -> bytes:
        """STATS u: the uptime; any other letter, the end of a report with nothing in it."""
        if not params:
            return self._numeric("461", "STATS", ":Not enough parameters")
        letter = params[0][:1] or "*"
        lines = []
        if letter == "u":
            up = int(time.time() - STARTED)
            days, rest = divmod(up, 86400)
            clock = f"{rest // 3600}:{rest % 3600 // 60:02}:{rest % 60:02}"
            lines.append(self._line("242", f"Server Up {days} days {clock}"))
        lines.append(self._line("219", letter, "End of /STATS report"))
        return irc_frame(b"".join(lines))

    def _links(self, _params) -> bytes:
        links = self._line("364", SERVER_NAME, SERVER_NAME, "0 chatroom")
        return irc_frame(links + self._line("365", "*", "End of /LINKS list"))

    def _whowas(self, params) -> bytes:
        """No nickname's past is kept: 406 for each asked, then the end."""
        if not params or not params[0]:
            return self._numeric("431", ":No nickname given")
        lines = [self._line("406", nick, "There was no such nickname") for nick in params[0].split(",") if nick]
        lines.append(self._line("369", params[0], "End of WHOWAS"))
        return irc_frame(b"".join(lines))

    def _oper(self, params) -> bytes:
        if len(params) < 2:
            return self._numeric("461", "OPER", ":Not enough parameters")
        return self._numeric("491", ":No O-lines for your host (this server has no operators)")

    def _kill(self, params) -> bytes:
        if len(params) < 2:
            return self._numeric("461", "KILL", ":Not enough parameters")
        return self._numeric("481", ":Permission Denied- You're not an IRC operator")

    def _wallops(self, params) -> bytes:
        if not params or not params[0]:
            return self._numeric("461", "WALLOPS", ":Not enough parameters")
        return self._numeric("481", ":Permission Denied- You're not an IRC operator")

    def _users(self, _params) -> bytes:
        return self._numeric("446", ":USERS has been disabled (WHO and LUSERS say who is on)")

    def _summon(self, _params) -> bytes:
        return self._numeric("445", ":SUMMON has been disabled")

    def _help(self, params) -> bytes:
        """The commands this port answers (704, 705, 706, as Ergo's HELP); 524 for a topic."""
        topic = params[0].lower() if params and params[0] else "index"
        if topic != "index":
            return self._numeric("524", topic, ":No help available on this topic")
        lines = [
            self._line("704", "index", "chatroom's IRC port answers these commands:"),
            self._line("705", "index", " ".join(sorted(self._commands()))),
            self._line("705", "index", "Rooms are its channels, and its users its nicks."),
            self._line("706", "index", "End of /HELPOP"),
        ]
        return irc_frame(b"".join(lines))


# Each command's answer, for IrcClient's table of them.
SERVER_QUERIES = {
    "LUSERS": ServerQueries._lusers,
    "MOTD": ServerQueries._motd,
    "VERSION": ServerQueries._version,
    "TIME": ServerQueries._time,
    "INFO": ServerQueries._info,
    "ADMIN": ServerQueries._admin,
    "STATS": ServerQueries._stats,
    "LINKS": ServerQueries._links,
    "WHOWAS": ServerQueries._whowas,
    "OPER": ServerQueries._oper,
    "KILL": ServerQueries._kill,
    "WALLOPS": ServerQueries._wallops,
    "USERS": ServerQueries._users,
    "SUMMON": ServerQueries._summon,
    "HELP": ServerQueries._help,
}
