"""What the user types, turned into what the client should do (pure; no I/O).

One table (:data:`TABLE`) says each command's name, arguments, what it needs and what Tab
completes; ``help``, completion and the prompt's checks all come from it. :func:`parse_line`
takes one input line and returns its Command and a protocol message to send, a local action
(:class:`Exit`, :class:`Help`...), or an :class:`Error` to print instead of sending anything.
"""

from collections.abc import Callable
from dataclasses import dataclass

from ..protocol import MAX_HISTORY_COUNT, MAX_TEXT_CHARS, ListUsers, Login, Logout, SendTo, is_valid_username

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
    message: str


@dataclass(frozen=True)
class RegisterName:
    name: str


@dataclass(frozen=True)
class ChangeOwnPassword:
    pass


@dataclass(frozen=True)
class ShowHistory:
    peer: str
    count: int


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


def _no_arguments(action: Callable[[], object]) -> Callable[[str], object]:
    return lambda rest: Error(INVALID_COMMAND) if rest.strip() else action()


def _one_name(action: Callable[[str], object]) -> Callable[[str], object]:
    def read(rest):
        name = rest.strip(" ")
        return action(name) if is_valid_username(name) else Error(BAD_USERNAME)

    return read


def _history(rest):
    name, _, count = rest.strip(" ").partition(" ")
    if not is_valid_username(name):
        return Error(BAD_USERNAME)
    if not count.strip(" "):
        return ShowHistory(name, DEFAULT_HISTORY)
    if not count.strip(" ").isdigit() or not 1 <= int(count) <= MAX_HISTORY_COUNT:
        return Error(INVALID_COMMAND)
    return ShowHistory(name, int(count))


def _send_to(rest):
    name, _, text = rest.partition(" ")
    if not is_valid_username(name) or not text.strip(" "):
        return Error(BAD_USERNAME)
    if len(text) > MAX_TEXT_CHARS:
        return Error(BAD_MESSAGE)
    return SendTo(name, text)


# In the order help lists them.
TABLE = (
    Command("login", "NAME", "log in as NAME (1-20 characters, no spaces)", _one_name(Login), asks_password=True),
    Command("list", "", "show who is logged in", _no_arguments(ListUsers)),
    Command("sendto", "NAME TEXT", "send TEXT to NAME", _send_to, completes_names=True),
    Command("logout", "", "log out (you stay connected)", _no_arguments(Logout)),
    Command(
        "register",
        "NAME",
        "make NAME yours, with a password (asked for, never shown)",
        _one_name(RegisterName),
        asks_password=True,
    ),
    Command(
        "passwd",
        "",
        "change the password of the name you are logged in as",
        _no_arguments(ChangeOwnPassword),
        asks_password=True,
    ),
    Command("history", "NAME [N]", f"the last N messages (default {DEFAULT_HISTORY}) between you and NAME", _history),
    Command("help", "", "show this help", _no_arguments(Help), needs_server=False),
    Command("exit", "", "disconnect and quit (also Ctrl-D)", _no_arguments(Exit), needs_server=False),
)
COMMANDS = {command.name: command for command in TABLE}
USAGE = "Commands:\n" + "\n".join(f"  {f'{c.name} {c.arguments}'.strip():<19}{c.summary}" for c in TABLE)


def parse_line(line: str) -> "tuple[Command | None, object] | None":
    """(the command, what to do) for one input line: a protocol request, a local action or an
    Error (for an unknown command, with no Command); None for a blank line."""
    line = line.removesuffix("\n").removesuffix("\r")
    if not line.strip():
        return None
    name, _, rest = line.partition(" ")
    command = COMMANDS.get(name)
    if command is None:
        return None, Error(INVALID_COMMAND)
    return command, command.read(rest)


def parse(line: str):
    """What one input line asks for (see parse_line), or None for a blank line."""
    parsed = parse_line(line)
    return None if parsed is None else parsed[1]
