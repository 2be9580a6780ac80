"""What the user types, turned into what the client should do (pure; no I/O).

One table (:data:`TABLE`) says each command's name, arguments, what it needs and what Tab
completes; ``help``, completion and the prompt's checks all come from it. :func:`parse_line`
takes one input line and returns its Command and a protocol message to send, a local action
(:class:`Exit`, :class:`Help`...), or an :class:`Error` to print instead of sending anything.
"""

from collections.abc import Callable
from dataclasses import dataclass

from ..device_frames import MAX_AWAY_CHARS, Away, EndSession, Sessions
from ..protocol import MAX_HISTORY_COUNT, MAX_TEXT_CHARS, ListUsers, Login, Logout, SendTo, is_valid_username
from ..room_frames import (
    ROOM_PREFIX,
    GiveRoom,
    Invite,
    Join,
    Kick,
    ListMembers,
    ListRooms,
    Part,
    SetInviteOnly,
    SetTopic,
    is_room_name,
)
from ..search_frames import Search
from .display import as_action
from .reasons import why_not_a_name

BAD_USERNAME = "Bad username"
BAD_MESSAGE = "Bad message"
INVALID_COMMAND = "Invalid command"

DEFAULT_HISTORY = 20


@dataclass(frozen=True)
class Exit:
    pass


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Error:
    message: str  # the seed's words
    reason: str | None = None  # why, said after them on a terminal


@dataclass(frozen=True)
class RegisterName:
    name: str


@dataclass(frozen=True)
class ChangeOwnPassword:
    pass


@dataclass(frozen=True)
class Talk:
    """Open a conversation with peer (plain lines go to them), or close it (None)."""

    peer: str | None


@dataclass(frozen=True)
class Reconnect:
    pass


@dataclass(frozen=True)
class Reply:
    """Send text to whoever wrote last."""

    text: str


@dataclass(frozen=True)
class Me:
    """Say text as an action in the conversation talked in: IRC's /me."""

    text: str


@dataclass(frozen=True)
class ShowTopic:
    room: str


@dataclass(frozen=True)
class ShowHistory:
    peer: str
    count: int
    unread: bool = False  # only what came after the marker (what no device of one's showed yet)


@dataclass(frozen=True)
class Command:
    """One command of the client: how it is typed, what it does, and what it needs."""

    name: str
    arguments: str  # as the usage writes them: "NAME TEXT"
    summary: str
    read: Callable[[str], object]  # the rest of the line -> the request or action, or an Error
    needs_server: bool = True
    asks_password: bool = False  # may ask for a password, at the prompt
    completes_names: bool = False  # Tab completes a username as its first argument
    words_before_text: int | None = None  # for a command that sends a message: where its text starts
    terminal_only: bool = False  # a convenience of the prompt; pipe mode keeps the seed's commands


def _no_arguments(action: Callable[[], object]) -> Callable[[str], object]:
    return lambda rest: Error(INVALID_COMMAND, "it takes no arguments") if rest.strip() else action()


def _a_name(name: str, usage: str) -> Error | None:
    """The error for a name that is not a valid username, if it is not."""
    if is_valid_username(name):
        return None
    return Error(BAD_USERNAME, f"usage: {usage}" if not name else why_not_a_name(name))


def _a_name_or_room(name: str, usage: str) -> Error | None:
    """The error for what is neither a valid username nor a valid room name, if it is not."""
    if name.startswith(ROOM_PREFIX):
        return None if is_room_name(name) else Error(BAD_USERNAME, "a room is # and 1-20 characters, no spaces")
    return _a_name(name, usage)


def _a_room(room: str, usage: str) -> Error | None:
    if is_room_name(room):
        return None
    return Error(BAD_USERNAME, f"usage: {usage}" if not room else "a room is # and 1-20 characters, no spaces")


def _one_room(action: Callable[[str], object], usage: str) -> Callable[[str], object]:
    def read(rest):
        room = rest.strip(" ")
        return _a_room(room, usage) or action(room)

    return read


def _room_and_name(action: Callable[[str, str], object], usage: str) -> Callable[[str], object]:
    def read(rest):
        room, _, name = rest.strip(" ").partition(" ")
        name = name.strip(" ")
        return _a_room(room, usage) or _a_name(name, usage) or action(room, name)

    return read


def _topic(rest):
    usage = "topic #ROOM [TEXT]"
    room, _, text = rest.strip(" ").partition(" ")
    if error := _a_room(room, usage):
        return error
    return SetTopic(room, text.strip(" ")) if text.strip(" ") else ShowTopic(room)


def _invite_only(rest):
    usage = "invite-only #ROOM on|off"
    room, _, switch = rest.strip(" ").partition(" ")
    if error := _a_room(room, usage):
        return error
    if switch.strip(" ") not in ("on", "off"):
        return Error(INVALID_COMMAND, f"usage: {usage}")
    return SetInviteOnly(room, switch.strip(" ") == "on")


def _search(rest):
    usage = "search TEXT [in NAME|#ROOM]"
    text, scope = rest.strip(" "), ""
    words = text.split(" ")
    if len(words) >= 3 and words[-2] == "in":
        text, scope = " ".join(words[:-2]).strip(" "), words[-1]
        if error := _a_name_or_room(scope, usage):
            return error
    if not text:
        return Error(INVALID_COMMAND, f"usage: {usage}")
    return Search(DEFAULT_HISTORY, 0, scope, text)


def _sessions(rest):
    words = rest.split()
    if not words:
        return Sessions()
    if len(words) == 2 and words[0] == "end" and words[1].isdigit() and int(words[1]) < 1 << 32:
        return EndSession(int(words[1]))
    return Error(INVALID_COMMAND, "usage: sessions [end N]")


def _away(rest):
    message = rest.strip(" ")
    if len(message) > MAX_AWAY_CHARS:
        return Error(INVALID_COMMAND, f"an away message is at most {MAX_AWAY_CHARS} characters")
    return Away(True, message)


def _one_name(action: Callable[[str], object], usage: str) -> Callable[[str], object]:
    def read(rest):
        name = rest.strip(" ")
        return _a_name(name, usage) or action(name)

    return read


def _history(rest):
    usage = "history NAME [N|unread]"
    name, _, count = rest.strip(" ").partition(" ")
    count = count.strip(" ")
    if error := _a_name_or_room(name, usage):
        return error
    if not count:
        return ShowHistory(name, DEFAULT_HISTORY)
    if count == "unread":
        return ShowHistory(name, MAX_HISTORY_COUNT, unread=True)
    if not count.isdigit():
        return Error(INVALID_COMMAND, f"usage: {usage}")
    if not 1 <= int(count) <= MAX_HISTORY_COUNT:
        return Error(INVALID_COMMAND, f"N is 1 to {MAX_HISTORY_COUNT}: at most {MAX_HISTORY_COUNT} messages")
    return ShowHistory(name, int(count))


def _send_to(rest):
    usage = "sendto NAME TEXT"
    name, _, text = rest.partition(" ")
    if error := _a_name_or_room(name, usage):
        return error
    if not text.strip(" "):
        return Error(BAD_USERNAME, f"usage: {usage}")  # the seed's words for a missing text
    if len(text) > MAX_TEXT_CHARS:
        return Error(BAD_MESSAGE, f"longer than {MAX_TEXT_CHARS} characters")
    return SendTo(name, text)


def _talk(rest):
    name = rest.strip(" ")
    return Talk(None) if not name else _a_name_or_room(name, "talk [NAME|#ROOM]") or Talk(name)


def _reply(rest):
    if not rest.strip(" "):
        return Error(INVALID_COMMAND, "usage: reply TEXT")
    if len(rest) > MAX_TEXT_CHARS:
        return Error(BAD_MESSAGE, f"longer than {MAX_TEXT_CHARS} characters")
    return Reply(rest)


_ACTION_AROUND = len(as_action(""))  # (what an action's text adds)


def _me(rest):
    if not rest.strip(" "):
        return Error(INVALID_COMMAND, "usage: me TEXT")
    if len(rest) + _ACTION_AROUND > MAX_TEXT_CHARS:
        return Error(BAD_MESSAGE, f"longer than {MAX_TEXT_CHARS - _ACTION_AROUND} characters")
    return Me(rest)


# In the order help lists them.
TABLE = (
    Command(
        "login",
        "NAME",
        "log in as NAME (1-20 characters, no spaces)",
        _one_name(Login, "login NAME"),
        asks_password=True,
    ),
    Command("list", "", "show who is logged in", _no_arguments(ListUsers)),
    Command(
        "sendto", "NAME TEXT", "send TEXT to NAME (or to a #room)", _send_to, completes_names=True, words_before_text=1
    ),
    Command(
        "talk",
        "[NAME]",
        "talk with NAME or in a #room: plain lines go there (/commands still work); alone, ends it",
        _talk,
        needs_server=False,
        completes_names=True,
        terminal_only=True,
    ),
    Command("reply", "TEXT", "send TEXT to whoever wrote to you last", _reply, words_before_text=0, terminal_only=True),
    Command(
        "me",
        "TEXT",
        "in a talk: say TEXT as an action (* alice waves), as IRC's /me",
        _me,
        words_before_text=0,
        terminal_only=True,
    ),
    Command("logout", "", "log out (you stay connected)", _no_arguments(Logout)),
    Command(
        "register",
        "NAME",
        "make NAME yours, with a password (asked for, never shown)",
        _one_name(RegisterName, "register NAME"),
        asks_password=True,
    ),
    Command(
        "passwd",
        "",
        "change the password of the name you are logged in as",
        _no_arguments(ChangeOwnPassword),
        asks_password=True,
    ),
    Command(
        "history",
        "NAME [N|unread]",
        f"the last N messages (default {DEFAULT_HISTORY}) with NAME or in a #room; unread: those not yet read",
        _history,
        completes_names=True,
    ),
    Command(
        "reconnect",
        "",
        "when the connection is lost: try again now (so does Enter on an empty line)",
        _no_arguments(Reconnect),
        needs_server=False,
        terminal_only=True,
    ),
    Command(
        "join", "#ROOM", "join a room (a new one is made, yours if you are registered)", _one_room(Join, "join #ROOM")
    ),
    Command("part", "#ROOM", "leave a room", _one_room(Part, "part #ROOM"), completes_names=True),
    Command("rooms", "", "show the rooms you may join, and yours", _no_arguments(ListRooms)),
    Command("members", "#ROOM", "show who is in a room", _one_room(ListMembers, "members #ROOM"), completes_names=True),
    Command("topic", "#ROOM [TEXT]", "show a room's topic, or (its owner) set it", _topic, completes_names=True),
    Command("kick", "#ROOM NAME", "(owner) remove NAME from a room", _room_and_name(Kick, "kick #ROOM NAME")),
    Command("invite", "#ROOM NAME", "(owner) invite NAME to a room", _room_and_name(Invite, "invite #ROOM NAME")),
    Command("invite-only", "#ROOM on|off", "(owner) let only invited names join", _invite_only),
    Command(
        "give", "#ROOM NAME", "(owner) hand a room to a registered member", _room_and_name(GiveRoom, "give #ROOM NAME")
    ),
    Command("search", "TEXT [in NAME|#ROOM]", "your messages holding every word of TEXT, newest first", _search),
    Command("away", "[MESSAGE]", "say you are away (until back, or until you send something)", _away),
    Command("back", "", "say you are back", _no_arguments(lambda: Away(False))),
    Command("sessions", "[end N]", "the devices you are logged in from; end N logs one out", _sessions),
    Command("help", "", "show this help", _no_arguments(Help), needs_server=False),
    Command("exit", "", "disconnect and quit (also Ctrl-D)", _no_arguments(Exit), needs_server=False),
)
COMMANDS = {command.name: command for command in TABLE}


def usage(terminal: bool) -> str:
    shown = [c for c in TABLE if terminal or not c.terminal_only]
    forms = [f"{c.name} {c.arguments}".strip() for c in shown]
    width = max(map(len, forms)) + 2
    return "Commands:\n" + "\n".join(f"  {form:<{width}}{c.summary}" for form, c in zip(forms, shown, strict=True))


USAGE = usage(terminal=False)


def parse_line(line: str, terminal: bool = False) -> "tuple[Command | None, object] | None":
    """(the command, what to do) for one input line: a protocol request, a local action or an
    Error (for an unknown command, with no Command); None for a blank line. ``terminal``: the
    prompt's own commands too."""
    line = line.removesuffix("\n").removesuffix("\r")
    if not line.strip():
        return None
    name, _, rest = line.partition(" ")
    command = COMMANDS.get(name)
    if command is None or (command.terminal_only and not terminal):
        return None, Error(INVALID_COMMAND, "type help")
    return command, command.read(rest)


def parse(line: str):
    """What one input line asks for (see parse_line), or None for a blank line."""
    parsed = parse_line(line)
    return None if parsed is None else parsed[1]
