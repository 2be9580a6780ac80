"""The client's command loop: one input line in, the server's answer out as text.

:class:`Client` is shared by both front ends: :mod:`.plain` for a stdin that is not a
terminal, and :mod:`.terminal` for an interactive prompt.
"""

import sys

from ..protocol import Incoming, Login, Logout, Response, Status, UserList
from .commands import USAGE, Error, Exit, Help, parse
from .connection import REPLY_TIMEOUT, Connection, NoReply
from .display import escape, message_line

_STATUS_WORDS = {Status.OK: "Success", Status.FAILURE: "Failure", Status.MALFORMED: "Malformed packet"}


class Client:
    """Runs the user's commands against a connection and says what happened.

    ``write`` prints one line. The client remembers who it is logged in as, for the prompt,
    and the names of the last list and of the senders it has seen, for completion.
    """

    def __init__(self, sock, write):
        self._write = write
        self._listed = set()
        self._senders = set()
        self.name = None
        self.connection = Connection(sock, self._show_message)

    @property
    def known_names(self) -> set:
        return self._listed | self._senders

    def _show_message(self, message: Incoming):
        self._senders.add(message.sender)
        self._write(message_line(message.sender, message.text))

    def handle(self, line: str) -> bool:
        """Carry out one input line; False when the user asked to exit."""
        command = parse(line)
        if command is None:
            return True
        if isinstance(command, Exit):
            return False
        if isinstance(command, Help):
            self._write(USAGE)
        elif isinstance(command, Error):
            self._write(command.message)
        else:
            self._request(command)
        return True

    def _request(self, command):
        try:
            reply = self.connection.request(command)
        except NoReply:
            print(f"chatroom-client: no reply from the server in {REPLY_TIMEOUT:g} s", file=sys.stderr)
            return
        if isinstance(reply, UserList):
            self._listed = set(reply.names)
            for name in reply.names:
                self._write(escape(name))
            return
        assert isinstance(reply, Response), reply
        if reply.status is Status.OK:
            if isinstance(command, Login):
                self.name = command.name
            elif isinstance(command, Logout):
                self.name = None
        self._write(_STATUS_WORDS[reply.status])
