"""What the user types, turned into what the client should do (pure; no I/O).

:func:`parse` takes one input line and returns a protocol message to send, a local action
(:class:`Exit`, :class:`Help`), an :class:`Error` to print instead of sending anything, or
None for a blank line.
"""

from dataclasses import dataclass

from ..protocol import MAX_HISTORY_COUNT, MAX_TEXT_CHARS, ListUsers, Login, Logout, SendTo, is_valid_username

BAD_USERNAME = "Bad username"
BAD_MESSAGE = "Bad message"
INVALID_COMMAND = "Invalid command"

COMMANDS = ("exit", "help", "history", "list", "login", "logout", "passwd", "register", "sendto")
DEFAULT_HISTORY = 20

USAGE = """\
Commands:
  login NAME         log in as NAME (1-20 characters, no spaces)
  list               show who is logged in
  sendto NAME TEXT   send TEXT to NAME
  logout             log out (you stay connected)
  register NAME      make NAME yours, with a password (asked for, never shown)
  passwd             change the password of the name you are logged in as
  history NAME [N]   the last N messages (default 20) between you and NAME
  help               show this help
  exit               disconnect and quit (also Ctrl-D)"""


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


_NO_ARGUMENTS = {"list": ListUsers, "logout": Logout, "exit": Exit, "help": Help, "passwd": ChangeOwnPassword}


def parse(line: str):
    line = line.removesuffix("\n").removesuffix("\r")
    if not line.strip():
        return None
    command, _, rest = line.partition(" ")
    if command in _NO_ARGUMENTS:
        return Error(INVALID_COMMAND) if rest.strip() else _NO_ARGUMENTS[command]()
    if command == "login":
        return _login(rest)
    if command == "sendto":
        return _send_to(rest)
    if command == "register":
        name = rest.strip(" ")
        return RegisterName(name) if is_valid_username(name) else Error(BAD_USERNAME)
    if command == "history":
        return _history(rest)
    return Error(INVALID_COMMAND)


def _history(rest):
    name, _, count = rest.strip(" ").partition(" ")
    if not is_valid_username(name):
        return Error(BAD_USERNAME)
    if not count.strip(" "):
        return ShowHistory(name, DEFAULT_HISTORY)
    if not count.strip(" ").isdigit() or not 1 <= int(count) <= MAX_HISTORY_COUNT:
        return Error(INVALID_COMMAND)
    return ShowHistory(name, int(count))


def _login(rest):
    name = rest.strip(" ")
    return Login(name) if is_valid_username(name) else Error(BAD_USERNAME)


def _send_to(rest):
    name, _, text = rest.partition(" ")
    if not is_valid_username(name) or not text.strip(" "):
        return Error(BAD_USERNAME)
    if len(text) > MAX_TEXT_CHARS:
        return Error(BAD_MESSAGE)
    return SendTo(name, text)
