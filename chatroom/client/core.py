"""The client's command loop: one input line in, what happened out, through an Output.

:class:`Client` is shared by both front ends: :mod:`.plain` for a stdin that is not a
terminal (the seed's exact words, via its PlainOutput), and :mod:`.terminal` for an
interactive prompt (a conversation, via its TerminalOutput).
"""

from collections.abc import Callable
from typing import Protocol

from ..protocol import (
    EXTENSION_VERSION,
    Authenticate,
    ChangePassword,
    Hello,
    HistoryPage,
    HistoryRequest,
    ListUsers,
    Login,
    Logout,
    Register,
    Response,
    SendTo,
    ServerVersion,
    Status,
    StoredMessage,
    UserList,
    is_valid_password,
)
from .commands import (
    BAD_MESSAGE,
    INVALID_COMMAND,
    ChangeOwnPassword,
    Error,
    Exit,
    Help,
    RegisterName,
    ShowHistory,
    parse,
)
from .connection import REPLY_TIMEOUT, Connection, ConnectionLost, NoReply
from .display import escape

STATUS_WORDS = {
    Status.OK: "Success",
    Status.FAILURE: "Failure",
    Status.MALFORMED: "Malformed packet",
    Status.STORED: "Stored",
}
# ask_password(prompt, new) -> the password, or None; ``new``: a password being chosen.
AskPassword = Callable[[str, bool], "str | None"]
_ERROR_REASONS = {BAD_MESSAGE: "longer than 65535 characters", INVALID_COMMAND: "type help"}


class Output(Protocol):
    """Where a client says what happened."""

    def message(self, sender: str, text: str) -> None:
        """A message from another user."""

    def outcome(self, word: str, reason: str | None = None) -> None:
        """The seed's word for a result (``Success``, ``Failure``, ``Bad username``...), with
        the reason where the client can know it."""

    def names(self, names: tuple) -> None:
        """The answer to ``list``."""

    def sent(self, recipient: str, text: str) -> None:
        """One's own message, once the server has taken it."""

    def usage(self) -> None: ...

    def stored(self, message: StoredMessage) -> None:
        """A message kept for us while we were away."""

    def history(self, peer: str, entries: tuple) -> None: ...

    def warning(self, text: str) -> None:
        """Something the user should know that is not an answer (a reply that did not come)."""


class Client:
    """Runs the user's commands against a connection and says what happened.

    The client remembers who it is logged in as (for the prompt, and to log in again after a
    reconnect), the last list and the senders it has seen (for completion and for reasons).
    ``connection`` is None while there is none.
    """

    def __init__(self, output: Output):
        self.output = output
        self.name: str | None = None
        self.connection: Connection | None = None
        self.extended = False  # the server has the extension (accounts, offline, history)
        self._password: str | None = None  # of the registered name logged in, to log in again
        self._listed: set[str] | None = None  # the last list's names, once there was one
        self._senders: set[str] = set()

    def attach(self, sock) -> Connection:
        """Use a new connection (the first, or one made after the last was lost) and learn
        whether its server has the extension: HELLO, answered MALFORMED by a server without."""
        connection = Connection(sock, self._show_message, self.output.warning)
        self.connection = connection
        try:
            reply = connection.request(Hello(EXTENSION_VERSION))
            # OK; or, from a server older than this client, the version it speaks instead.
            self.extended = reply == Response(Status.OK) or isinstance(reply, ServerVersion)
        except NoReply:
            self.extended = False
        return connection

    def log_in_again(self, name: str) -> bool:
        """After a reconnect: log in as name again (with the password, if it is registered)."""
        connection = self.connection
        assert connection is not None
        reply = connection.request(Login(name))
        if reply == Response(Status.REGISTERED) and self._password is not None:
            reply = connection.request(Authenticate(name, self._password))
        if reply == Response(Status.OK):
            self.name = name
            return True
        self.name = self._password = None
        return False

    @property
    def known_names(self) -> set:
        return (self._listed or set()) | self._senders

    @property
    def listed_count(self) -> int | None:
        return None if self._listed is None else len(self._listed)

    def _show_message(self, message):
        self._senders.add(message.sender)
        if type(message) is StoredMessage:
            self.output.stored(message)
        else:
            self.output.message(message.sender, message.text)

    def handle(self, line: str, ask_password: AskPassword | None = None) -> bool:
        """Carry out one input line; False when the user asked to exit (see run)."""
        return self.run(parse(line), ask_password)

    def run(self, command, ask_password: AskPassword | None = None) -> bool:
        """Carry out what a line asked for (commands.parse); False when the user asked to
        exit. Raises ConnectionLost when a request finds no connection. ``ask_password`` gets
        passwords, when one is needed (None: there is no way to ask, and what needs one fails)."""
        if command is None:
            return True
        if isinstance(command, Exit):
            return False
        if isinstance(command, Help):
            self.output.usage()
        elif isinstance(command, Error):
            self.output.outcome(command.message, _ERROR_REASONS.get(command.message))
        elif isinstance(command, (RegisterName, ChangeOwnPassword, ShowHistory)):
            self._extension_command(command, ask_password or _no_password)
        else:
            self._request(command, ask_password or _no_password)
        return True

    def _ask(self, command) -> Response | UserList | HistoryPage | None:
        """The reply to command, or None when none came in time (said on stderr)."""
        connection = self.connection
        if connection is None or connection.lost.is_set():
            raise ConnectionLost()
        try:
            reply = connection.request(command)
        except NoReply:
            self.output.warning(f"no reply from the server in {REPLY_TIMEOUT:g} s")
            return None
        if not isinstance(reply, (Response, UserList, HistoryPage)):
            raise ConnectionLost()  # the server broke the protocol; the connection says how
        return reply

    def _request(self, command, ask_password: AskPassword):
        reply = self._ask(command)
        if reply is None:
            return
        if isinstance(reply, UserList):
            self._listed = set(reply.names)
            self.output.names(reply.names)
            return
        if not isinstance(reply, Response):
            raise ConnectionLost()
        password = None
        if reply.status is Status.REGISTERED and isinstance(command, Login):
            password = ask_password(f"password for {escape(command.name)}: ", False)
            if password is None:
                self.output.outcome("Failure", f"{escape(command.name)} is registered: it needs its password")
                return
            reply = self._ask(Authenticate(command.name, password))
            if not isinstance(reply, Response):
                return
        reason = None
        if reply.status is Status.OK:
            if isinstance(command, Login):
                self.name, self._password = command.name, password
            elif isinstance(command, Logout):
                self.name = self._password = None
        elif reply.status is Status.FAILURE:
            reason = self._failure_reason(command, password)
        elif reply.status is Status.STORED and isinstance(command, SendTo):
            reason = f"{escape(command.recipient)} is offline"
        self.output.outcome(STATUS_WORDS.get(reply.status, "Failure"), reason)
        if reply.status in (Status.OK, Status.STORED) and isinstance(command, SendTo):
            self.output.sent(command.recipient, command.text)

    def _extension_command(self, command, ask_password: AskPassword):
        if not self.extended:
            self.output.outcome("Failure", "this server has no accounts or history")
            return
        if isinstance(command, ShowHistory):
            reply = self._ask(HistoryRequest(command.peer, command.count))
            if isinstance(reply, HistoryPage):
                self.output.history(reply.peer, reply.entries)
            elif reply is not None:
                self.output.outcome("Failure", "only a registered name logged in with its password has a history")
            return
        request: Register | ChangePassword
        if isinstance(command, RegisterName):
            password = ask_password(f"password for {escape(command.name)}: ", True)
            request = Register(command.name, password or "")
            reasons = f"{escape(command.name)} is registered or in use by someone else"
        else:
            old = ask_password("current password: ", False)
            password = ask_password("new password: ", True) if old is not None else None
            request = ChangePassword(old or "", password or "")
            reasons = "not logged in with a registered name, or a wrong password"
        if password is None or not is_valid_password(password):
            self.output.outcome("Failure", "no password given (1 to 255 bytes)")
            return
        reply = self._ask(request)
        if not isinstance(reply, Response):
            return
        if reply.status is Status.OK:
            if isinstance(command, RegisterName):
                self.name = command.name
            self._password = password
            self.output.outcome("Success")
        else:
            self.output.outcome(STATUS_WORDS.get(reply.status, "Failure"), reasons)

    def _failure_reason(self, command, password=None) -> str | None:
        if isinstance(command, Login):
            if self.name:
                return f"already logged in as {escape(self.name)}; logout first"
            return "wrong password, or too many tries: wait a minute" if password is not None else "name taken"
        if isinstance(command, Logout):
            return "not logged in"
        if isinstance(command, SendTo):
            if self.name is None:
                return "not logged in"
            if self._listed is not None and command.recipient not in self._listed:
                return f"{escape(command.recipient)} is not online"
        if isinstance(command, ListUsers):
            return "the server could not list users"
        return None


def _no_password(prompt: str, new: bool) -> None:
    return None
