"""The client's command loop: one input line in, what happened out, through an Output.

:class:`Client` is shared by both front ends: :mod:`.plain` for a stdin that is not a
terminal (the seed's exact words, via its PlainOutput), and :mod:`.terminal` for an
interactive prompt (a conversation, via its TerminalOutput).
"""

from collections.abc import Callable

from ..device_frames import (
    DEVICES_VERSION,
    Mark,
    Marked,
    OwnMessage,
    PresenceStatus,
    SessionEnded,
    SessionList,
    Unread,
    UnreadCounts,
)
from ..protocol import (
    EXTENSION_VERSION,
    Authenticate,
    ChangePassword,
    DirectMessage,
    Hello,
    HistoryPage,
    HistoryRequest,
    ListUsers,
    Login,
    Logout,
    Presence,
    Register,
    Response,
    SendTo,
    ServerVersion,
    Status,
    StoredMessage,
    UserList,
    is_valid_password,
)
from ..room_frames import Join, ListMembers, MemberList, RoomEvent, RoomHistory, RoomList, RoomMessage
from ..search_frames import SearchResults
from .commands import (
    ChangeOwnPassword,
    Error,
    Exit,
    Help,
    RegisterName,
    ShowHistory,
    ShowTopic,
    parse,
)
from .connection import REPLY_TIMEOUT, Connection, ConnectionLost, NoReply
from .display import escape
from .output import Output
from .reasons import server_reason

STATUS_WORDS = {
    Status.OK: "Success",
    Status.FAILURE: "Failure",
    Status.MALFORMED: "Malformed packet",
    Status.STORED: "Stored",
}
HELLO_TIMEOUT = 5.0  # a chatroom server answers HELLO at once (a seed one with MALFORMED)
# What a request may be answered with (anything else: the server broke the protocol).
ANSWERS = (Response, UserList, HistoryPage, RoomList, MemberList, RoomHistory, SearchResults, SessionList, UnreadCounts)


class NoPassword(Exception):
    """No password to send: the user cancelled (Ctrl-C), or none could be had (why: the
    message)."""

    def __init__(self, why: str = "", cancelled: bool = False):
        super().__init__(why)
        self.why = why
        self.cancelled = cancelled


# ask_password(prompt, new) -> the password; raises NoPassword. ``new``: one being chosen.
AskPassword = Callable[[str, bool], str]


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
        self.version = 0  # the extension version the server speaks to this client
        self.last_sender: str | None = None
        self._password: str | None = None  # of the registered name logged in, to log in again
        self._listed: set[str] | None = None  # the last list's names, once there was one
        self._senders: set[str] = set()
        self._rooms: set[str] = set()  # the rooms seen (joined, listed, written in)
        # Stored messages that arrive before their login's Success is said, said after it.
        self._held_stored: list[StoredMessage] | None = None
        self._away_said = False
        self._markers: dict[str, int] = {}  # conversation -> the last message read, on any of one's devices

    def attach(self, sock, address: str = "the server") -> Connection:
        """Use a new connection (the first, or one made after the last was lost) and learn
        whether its server has the extension: HELLO, answered MALFORMED by a server without.
        A server that does not answer HELLO in time is not a chatroom server: the connection
        is given up (lost, with that reason)."""
        connection = Connection(sock, self._show_message, self.output.warning)
        self.connection = connection
        try:
            reply = connection.request(Hello(EXTENSION_VERSION), timeout=HELLO_TIMEOUT)
        except NoReply:
            connection.give_up(f"{address} does not answer like a chatroom server")
            raise ConnectionLost() from None
        # OK; or, from a server older than this client, the version it speaks instead.
        self.extended = reply == Response(Status.OK) or isinstance(reply, ServerVersion)
        self.version = reply.version if isinstance(reply, ServerVersion) else EXTENSION_VERSION if self.extended else 0
        return connection

    def log_in_again(self, name: str) -> bool:
        """After a reconnect: log in as name again (with the password, if it is registered)."""
        connection = self.connection
        assert connection is not None
        reply = connection.request(Login(name))
        if reply == Response(Status.REGISTERED) and self._password is not None:
            self._away_said = False
            reply = connection.request(Authenticate(name, self._password))
        if reply == Response(Status.OK):
            self.name = name
            return True
        self.name = self._password = None
        return False

    @property
    def known_names(self) -> set:
        return (self._listed or set()) | self._senders | self._rooms

    @property
    def listed_count(self) -> int | None:
        return None if self._listed is None else len(self._listed)

    def _show_message(self, message):
        kind = type(message)
        if kind is Presence or kind is PresenceStatus:
            return  # (this client does not WATCH: only a server that breaks the protocol sends these)
        if kind is Marked:
            self._markers[message.conversation] = message.id
            return
        if kind is SessionEnded:  # (its link reconnects logged in as nobody: see Connection)
            self.name = self._password = None
            return
        if kind is OwnMessage:
            self.output.own_message(message)
            return
        if kind is RoomEvent:
            self._rooms.add(message.room)
            self.output.room_event(message)
            return
        self._senders.add(message.sender)
        if kind is RoomMessage:
            self._rooms.add(message.room)
            self.output.room_message(message, message.sender == self.name)
            self._shown(message.room, message.id)
        elif kind is not StoredMessage:  # (Incoming, or DirectMessage with its id)
            self.last_sender = message.sender
            self.output.message(message.sender, message.text)
            if kind is DirectMessage:
                self._shown(message.sender, message.id)
        elif self._held_stored is not None:
            self._held_stored.append(message)
        else:
            self._show_stored(message)

    def _shown(self, conversation: str, message_id: int) -> None:
        """A message shown to the user is read: the account's marker moves there (its other
        devices learn it). Only a registered user logged in with its password has markers."""
        connection = self.connection
        if self._password is not None and self.version >= DEVICES_VERSION and connection is not None:
            self._markers[conversation] = max(message_id, self._markers.get(conversation, 0))
            try:
                connection.send_unanswered(Mark(conversation, message_id))
            except ConnectionLost:
                pass  # (the reconnect logs in again; the next message shown marks)

    def _show_stored(self, message: StoredMessage) -> None:
        if not self._away_said:
            self._away_said = True
            self.output.away()
        self.output.stored(message)
        if message.id:
            self._shown(message.sender, message.id)

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
        try:
            if isinstance(command, Help):
                self.output.usage()
            elif isinstance(command, Error):
                self.output.outcome(command.message, command.reason)
            elif isinstance(command, ShowTopic):
                self._request(ListMembers(command.room), ask_password or _no_password, topic=True)
            elif isinstance(command, (RegisterName, ChangeOwnPassword, ShowHistory)):
                self._extension_command(command, ask_password or _no_password)
            else:
                self._request(command, ask_password or _no_password)
        except NoPassword as no:
            if no.cancelled:
                self.output.notice("cancelled")
            else:
                self.output.outcome("Failure", no.why)
        return True

    def _ask(self, command):
        """The reply to command, or None when none came in time (said on stderr)."""
        connection = self.connection
        if connection is None or connection.lost.is_set():
            raise ConnectionLost()
        try:
            reply = connection.request(command)
        except NoReply:
            self.output.warning(f"no reply from the server in {REPLY_TIMEOUT:g} s")
            return None
        if not isinstance(reply, ANSWERS):
            raise ConnectionLost()  # the server broke the protocol; the connection says how
        return reply

    def _request(self, command, ask_password: AskPassword, topic: bool = False):
        if isinstance(command, Login):
            self._log_in(command, ask_password)
            return
        reply = self._ask(command)
        if reply is None:
            return
        if isinstance(reply, UserList):
            self._listed = set(reply.names)
            self.output.names(reply.names)
            return
        if isinstance(reply, SearchResults):
            self.output.search_results(reply.found, self.name or "")
            return
        if isinstance(reply, SessionList):
            self.output.sessions(reply.sessions)
            return
        if isinstance(reply, RoomList):
            self._rooms.update(entry.name for entry in reply.rooms)
            self.output.rooms(reply.rooms)
            return
        if isinstance(reply, MemberList):
            if not topic:
                self.output.members(reply.room, reply.members)
            else:
                self.output.topic(reply.room, reply.topic)
            return
        if not isinstance(reply, Response):
            raise ConnectionLost()
        word = STATUS_WORDS.get(reply.status, "Failure")
        reason = self._reason(reply, command)
        if isinstance(command, SendTo):
            self.output.sent(command.recipient, command.text, word, reason)
            return
        if reply.status is Status.OK and isinstance(command, Join):
            self._rooms.add(command.room)
        if reply.status is Status.OK and isinstance(command, Logout):
            self.name = self._password = None
        self.output.outcome(word, reason)

    def _log_in(self, command: Login, ask_password: AskPassword) -> None:
        reply = self._ask(command)
        password, held = None, []
        if reply == Response(Status.REGISTERED):
            try:
                password = ask_password(f"password for {escape(command.name)}: ", False)
            except NoPassword as no:
                if no.cancelled:
                    raise
                raise NoPassword(f"{escape(command.name)} is registered: {no.why or 'it needs its password'}") from None
            self._held_stored, self._away_said = [], False  # (said after the login's Success)
            try:
                reply = self._ask(Authenticate(command.name, password))
            finally:
                held, self._held_stored = self._held_stored, None
        if isinstance(reply, Response) and reply.status is Status.OK:
            self.name, self._password = command.name, password
        self._say(reply, command, password)
        if password is not None and self.name is not None and self.version >= DEVICES_VERSION:
            self._held_stored = held  # (more pages of them may come while UNREAD is answered)
            try:
                self._say_unread()
            finally:
                held, self._held_stored = self._held_stored, None
        for message in held:
            self._show_stored(message)

    def _say_unread(self) -> None:
        """What came while one was away, per conversation (after the marker one's devices
        last set): said once, before the messages kept for one."""
        counts = self._ask(Unread())
        if not isinstance(counts, UnreadCounts):
            return
        self._markers.update((entry.conversation, entry.marker) for entry in counts.entries)
        unread = tuple(entry for entry in counts.entries if entry.count)
        if unread:
            self.output.unread(unread)
            self._away_said = True

    def _say(self, reply, command, password=None) -> None:
        if not isinstance(reply, Response):
            return
        self.output.outcome(STATUS_WORDS.get(reply.status, "Failure"), self._reason(reply, command, password))

    def _extension_command(self, command, ask_password: AskPassword):
        if not self.extended:
            self.output.outcome("Failure", "this server has no accounts or history")
            return
        if isinstance(command, ShowHistory):
            reply = self._ask(HistoryRequest(command.peer, command.count))
            after = self._markers.get(command.peer, 0) if command.unread else -1
            if isinstance(reply, HistoryPage):
                self.output.history(reply.peer, tuple(e for e in reply.entries if e.id > after))
            elif isinstance(reply, RoomHistory):
                self.output.room_history(reply.room, tuple(e for e in reply.entries if e.id > after))
            elif isinstance(reply, Response):
                why = server_reason(reply, command.peer)
                self.output.outcome(
                    "Failure", why or "only a registered name logged in with its password has a history"
                )
            return
        request: Register | ChangePassword
        if isinstance(command, RegisterName):
            password = ask_password(f"password for {escape(command.name)}: ", True)
            request = Register(command.name, password)
            fallback = f"{escape(command.name)} is registered or in use by someone else"
        else:
            old = ask_password("current password: ", False)
            password = ask_password("new password: ", True)
            request = ChangePassword(old, password)
            fallback = "not logged in with a registered name, or a wrong password"
        if not is_valid_password(password):
            self.output.outcome("Failure", "a password is 1 to 255 bytes")
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
            name = command.name if isinstance(command, RegisterName) else self.name or ""
            self.output.outcome(STATUS_WORDS.get(reply.status, "Failure"), server_reason(reply, name) or fallback)

    def _reason(self, reply: Response, command, password=None) -> str | None:
        """Why the reply is what it is, in words, when it is not plain OK."""
        if reply.status is Status.STORED and isinstance(command, SendTo):
            return f"{escape(command.recipient)} is offline: kept for them"
        if reply.status is not Status.FAILURE:
            return None
        name = getattr(command, "recipient", None) or getattr(command, "room", None) or getattr(command, "name", None)
        name = name or ""
        return server_reason(reply, name) or self._failure_reason(command, password)

    def _failure_reason(self, command, password=None) -> str | None:
        """What the client can tell by itself of a FAILURE (from a server that says no more)."""
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


def _no_password(prompt: str, new: bool) -> str:
    raise NoPassword("no password given")
