"""The client's command loop: one input line in, what happened out, through an Output.

:class:`Client` is shared by both front ends: :mod:`.plain` for a stdin that is not a
terminal (the seed's exact words, via :class:`PlainOutput`), and :mod:`.terminal` for an
interactive prompt (a conversation, via its own Output).
"""

import sys
from typing import Protocol

from ..protocol import Incoming, ListUsers, Login, Logout, Response, SendTo, Status, UserList
from .commands import BAD_MESSAGE, INVALID_COMMAND, USAGE, Error, Exit, Help, parse
from .connection import REPLY_TIMEOUT, Connection, ConnectionLost, NoReply
from .display import escape, message_line

STATUS_WORDS = {Status.OK: "Success", Status.FAILURE: "Failure", Status.MALFORMED: "Malformed packet"}
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


class PlainOutput:
    """The seed's words, one per line, nothing more: for scripts and tests."""

    def __init__(self, write):
        self._write = write

    def message(self, sender, text):
        self._write(message_line(sender, text))

    def outcome(self, word, reason=None):
        self._write(word)

    def names(self, names):
        for name in names:
            self._write(escape(name))

    def sent(self, recipient, text):
        pass

    def usage(self):
        self._write(USAGE)


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
        self._listed: set[str] | None = None  # the last list's names, once there was one
        self._senders: set[str] = set()

    def attach(self, sock) -> Connection:
        """Use a new connection (the first, or one made after the last was lost)."""
        self.connection = Connection(sock, self._show_message)
        return self.connection

    @property
    def known_names(self) -> set:
        return (self._listed or set()) | self._senders

    @property
    def listed_count(self) -> int | None:
        return None if self._listed is None else len(self._listed)

    def _show_message(self, message: Incoming):
        self._senders.add(message.sender)
        self.output.message(message.sender, message.text)

    def handle(self, line: str) -> bool:
        """Carry out one input line; False when the user asked to exit. Raises ConnectionLost
        when a request finds no connection."""
        command = parse(line)
        if command is None:
            return True
        if isinstance(command, Exit):
            return False
        if isinstance(command, Help):
            self.output.usage()
        elif isinstance(command, Error):
            self.output.outcome(command.message, _ERROR_REASONS.get(command.message))
        else:
            self._request(command)
        return True

    def _request(self, command):
        connection = self.connection
        if connection is None or connection.lost.is_set():
            raise ConnectionLost()
        try:
            reply = connection.request(command)
        except NoReply:
            print(f"chatroom-client: no reply from the server in {REPLY_TIMEOUT:g} s", file=sys.stderr)
            return
        if isinstance(reply, UserList):
            self._listed = set(reply.names)
            self.output.names(reply.names)
            return
        if not isinstance(reply, Response):
            raise ConnectionLost()  # the server broke the protocol; the connection says how
        reason = None
        if reply.status is Status.OK:
            if isinstance(command, Login):
                self.name = command.name
            elif isinstance(command, Logout):
                self.name = None
        elif reply.status is Status.FAILURE:
            reason = self._failure_reason(command)
        self.output.outcome(STATUS_WORDS[reply.status], reason)
        if reply.status is Status.OK and isinstance(command, SendTo):
            self.output.sent(command.recipient, command.text)

    def _failure_reason(self, command) -> str | None:
        if isinstance(command, Login):
            return f"already logged in as {escape(self.name)}; logout first" if self.name else "name taken"
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
