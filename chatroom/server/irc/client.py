"""One IRC client's requests, answered over the chat rules: IRC in, IRC out, no I/O.

An :class:`IrcClient` turns each IRC message into the chatroom request it means (NICK and
USER log in, PASS makes it AUTHENTICATE a registered name, PRIVMSG is SENDTO) and the reply
into the numerics IRC clients expect. Its answers are frames (see translate.IRC_LINES), like
any session's, so that the session sends them in order with everything else.
"""

import logging
import time
from collections.abc import Callable

import irctokens

from ...codec import Decoder, frame_end
from ...device_frames import MAX_AWAY_CHARS
from ...protocol import MAX_NAME_CHARS, Authenticate, Hello, Login, Reason, Response, Status, Watch
from ..connection.relay import relay_text
from ..pending import Pending
from ..replies import OK
from ..rules import Rules
from .batches import labeled
from .channels import ChannelCommands
from .history import MOST_ASKED, HistoryCommands
from .lines import NotUtf8, Privmsg, TooLong, Unreadable, encode_line
from .marker_times import MarkerTimes
from .nicks import SERVER_NAME, source_of_nick, to_name, to_nick
from .sasl import SaslCommands
from .server_queries import SERVER_QUERIES, STARTED, VERSION_STRING, ServerQueries
from .tags import tags_for
from .translate import OFFLINE_AWAY, irc_frame, own_away_line, privmsg_lines
from .users import UserQueries
from .welcome import Unwelcomed, welcomed
from .writing import Writing, writing_for

log = logging.getLogger(__name__)

VERSION = 4  # the extension version the port speaks to the rules: an IRC client is one of a user's devices
ISUPPORT = (
    f"NICKLEN={MAX_NAME_CHARS}",
    "CHANTYPES=#",
    "CHANMODES=b,,,i",
    "PREFIX=(o)@",
    f"AWAYLEN={MAX_AWAY_CHARS}",
    "CASEMAPPING=ascii",
    f"NETWORK={SERVER_NAME}",
    f"CHATHISTORY={MOST_ASKED}",
    "MSGREFTYPES=msgid,timestamp",
    "UTF8ONLY",
    "CLIENTTAGDENY=*",  # (client-only tags, +typing and the like, are not relayed: clients hide what needs them)
)
_BEFORE_REGISTRATION = {"PASS", "NICK", "USER", "CAP", "AUTHENTICATE", "PING", "PONG", "QUIT"}
CAPABILITIES = (  # (offered in this order)
    "sasl",
    "server-time",
    "message-tags",
    "echo-message",
    "batch",
    "labeled-response",
    "account-tag",
    "away-notify",
    "extended-join",
    "invite-notify",
    "multi-prefix",  # (one prefix, @, is all a member has: nothing to change)
    "userhost-in-names",
    "draft/chathistory",
    "draft/read-marker",
)
CTCP_ACTION = "\x01ACTION "  # (/me: relayed, as the text of a message, \x01 and all)
_STARTED = time.strftime("%Y-%m-%d", time.gmtime(STARTED))
_OK = Response(Status.OK)


class IrcClient(ChannelCommands, UserQueries, ServerQueries, HistoryCommands, SaslCommands):
    def __init__(self, rules: Rules, on_quit: Callable[[], None], answer_later: Callable[[Callable[[], bytes]], None]):
        """``on_quit``: called at QUIT, to end the connection once its answer is out;
        ``answer_later(make)`` queues what make() returns, lines no request asked for, from
        a greenlet of the caller's (Session.answer_later)."""
        self._rules = rules
        self._on_quit = on_quit
        self._answer_later = answer_later
        self.quitting = False  # after QUIT: nothing more is answered, and the session ends
        self.nick = "*"  # the client's nickname, once it gave one
        self._user_given = False
        self._password: str | None = None
        self._negotiating = False  # between CAP LS and CAP END: registration waits
        self.caps: set[str] = set()  # the capabilities the client asked for and got
        self.writing: Writing | None = None  # writing_for(nick, caps) from the welcome on, again at a change
        self.unwelcomed: Unwelcomed | None = Unwelcomed()  # (see welcome.py)
        self._sasl_started = False  # AUTHENTICATE PLAIN said; the credentials come next
        self._sasl_chunks: list[str] = []  # the credentials' chunks so far (see SaslCommands)
        self._account: str | None = None  # the name SASL logged in
        self.registered = False
        self._label: str | None = None  # (labeled-response) the label of the command being answered
        # What translate reads, for the lines it makes (see translate.Reader):
        self.away_known: set[str] = set()
        self.echo_labels: dict[str, list[str]] = {}
        self.channels: set[str] = set()  # the rooms shown to the client as joined
        self.last_quit: str | None = None  # (see room_events)
        self.own_join: str | None = None  # (see room_events)
        self.marker_times = MarkerTimes()
        self.away_shown = False  # told it is away (306), and not told back since (305)

    # --- Answers ------------------------------------------------------------------------

    def answer(self, message) -> bytes:
        if type(message) is Privmsg and message.tags is None and self.registered and message.text:
            # (most of what a client sends: one message to one target, no tags to heed)
            if not self.quitting and "," not in message.target:
                self._label = None
                return self._send(message.target, message.text, False, message.raw)
        if self.quitting:
            return b""
        if type(message) is TooLong:
            return self._numeric("417", ":Input line was too long")
        if type(message) is Unreadable:
            return self._numeric("421", "?", ":Unknown command (not an IRC message)")
        if type(message) is NotUtf8:
            refusal = self._fail(message.command, "INVALID_UTF8", "Message rejected for containing invalid UTF-8")
            label = self._label_in(message.tags)
            return refusal if label is None else labeled(refusal, label)
        assert isinstance(message, (irctokens.Line, Privmsg))
        command, params = message.command, message.params
        if not self.registered and command not in _BEFORE_REGISTRATION:
            return self._numeric("451", ":You have not registered")
        handler = _HANDLERS.get(command)
        label = self._label_in(message.tags)
        self._label = label
        reply = self._numeric("421", command, ":Unknown command") if handler is None else handler(self, params)
        if label is None or self._label is None:  # (no label, or it went with an echo: see _to_channel)
            return reply
        return labeled(reply, label)

    def _label_in(self, tags: dict[str, str] | None) -> str | None:
        """The label a command carries, where the client takes labeled responses."""
        return tags.get("label") if tags and "labeled-response" in self.caps else None

    def is_account(self, name: str) -> bool:
        return self._rules.registered_name(name)

    def _ping(self, params) -> bytes:
        if not params:
            return self._numeric("409", ":No origin specified")
        return irc_frame(encode_line("PONG", SERVER_NAME, params[0], source=SERVER_NAME))

    def _pong(self, _params) -> bytes:
        return b""

    def _quit(self, _params) -> bytes:
        self.quitting = True
        self._on_quit()
        return irc_frame(encode_line("ERROR", "Closing link: quit"))

    def _cap(self, params) -> bytes:
        sub = params[0].upper() if params else ""
        if sub == "LS":
            self._negotiating = True
            with_values = len(params) > 1 and params[1] >= "302"
            offered = " ".join("sasl=PLAIN" if cap == "sasl" and with_values else cap for cap in CAPABILITIES)
            return irc_frame(encode_line("CAP", self.nick, "LS", offered, source=SERVER_NAME))
        if sub == "LIST":
            return irc_frame(encode_line("CAP", self.nick, "LIST", " ".join(self.caps), source=SERVER_NAME))
        if sub == "REQ":
            asked = params[1].split() if len(params) > 1 else []
            if not asked or any(cap.lstrip("-") not in CAPABILITIES for cap in asked):
                return irc_frame(encode_line("CAP", self.nick, "NAK", " ".join(asked), source=SERVER_NAME))
            watching = "away-notify" in self.caps
            for cap in asked:
                (self.caps.discard if cap.startswith("-") else self.caps.add)(cap.lstrip("-"))
            if self.unwelcomed is None:
                self.writing = writing_for(self.nick, self.caps)
            acked = irc_frame(encode_line("CAP", self.nick, "ACK", " ".join(asked), source=SERVER_NAME))
            if self.registered and not watching and "away-notify" in self.caps:
                return acked + self._watch_away()
            return acked
        if sub == "END":
            self._negotiating = False
            return self._register_if_ready()
        return self._numeric("410", sub or "*", ":Invalid CAP command")

    def _pass(self, params) -> bytes:
        if self.registered:
            return self._numeric("462", ":You may not reregister")
        if not params:
            return self._numeric("461", "PASS", ":Not enough parameters")
        self._password = params[0]
        return b""

    def _nick(self, params) -> bytes:
        if not params or not params[0]:
            return self._numeric("431", ":No nickname given")
        if self.registered:
            return self._numeric("432", params[0], ":Changing your nickname is not supported: connect again")
        if to_name(params[0]) is None:
            return self._numeric("432", params[0], ":Erroneous nickname")
        self.nick = params[0]  # (before the welcome: the lines are written with it from then on)
        return self._register_if_ready()

    def _user(self, params) -> bytes:
        if self.registered:
            return self._numeric("462", ":You may not reregister")
        if len(params) < 4:
            return self._numeric("461", "USER", ":Not enough parameters")
        self._user_given = True
        return self._register_if_ready()

    def _privmsg(self, params, notice: bool = False) -> bytes:
        command = "NOTICE" if notice else "PRIVMSG"
        if not params or not params[0]:
            return b"" if notice else self._numeric("411", f":No recipient given ({command})")
        if len(params) < 2 or not params[1]:
            return b"" if notice else self._numeric("412", ":No text to send")
        errors = [self._send(target, params[1], notice) for target in params[0].split(",")]
        return b"".join(errors)

    def _notice(self, params) -> bytes:
        return self._privmsg(params, notice=True)

    # --- Registration and sending -----------------------------------------------------

    def _register_if_ready(self) -> bytes:
        if self.registered or self.nick == "*" or not self._user_given or self._negotiating:
            return b""
        self._rules.hold_pushes()  # (what comes for the user once logged in follows the welcome)
        if self._sasl_started:  # (registration ends an exchange left half way: IRCv3 sasl)
            self._sasl_reset()
            return self._numeric("906", ":SASL authentication aborted") + self._register_if_ready()
        if self._account is not None:  # (logged in by SASL: its name is the nickname)
            self.nick, self.registered = to_nick(self._account), True
            log.info("irc %s is %s (sasl)", self._rules.host, self._account)
            return welcomed(self._welcome())
        name = to_name(self.nick)
        assert name is not None
        answer = self._log_in(Authenticate(name, self._password) if self._password is not None else Login(name))
        if answer.status is not Status.OK:
            return self._refused(answer)
        self.registered = True
        log.info("irc %s is %s", self._rules.host, name)
        return welcomed(self._welcome())

    def _log_in(self, request) -> Response:
        """Log in (LOGIN, or AUTHENTICATE): the answer. The frames that follow it (the
        messages kept for the user) are held to follow the welcome (see welcome.py)."""
        self._rules.answer(Hello(VERSION))
        reply = self._rules.answer(request)
        assert isinstance(reply, bytes), "a login is answered at once"
        assert self.unwelcomed is not None, "a login comes before the welcome"
        end = frame_end(reply)
        [answer] = Decoder.for_client().receive_data(reply[:end])
        self.unwelcomed.kept = reply[end:]
        return answer

    def _ask(self, request):
        """The rules' answer to request, decoded."""
        return _decoded(self._rules.answer(request))

    def _sent(self, name: str, text: str, raw: bytes, with_id: bool = False) -> Response:
        """SENDTO name text: the rules' answer, decoded (as _ask's, without a request made for
        the message a chat is made of)."""
        return _decoded(self._rules.send_text(name, text, raw, with_id))

    def _refused(self, answer: Response) -> bytes:
        if answer.status is Status.REGISTERED:
            return self._numeric("433", self.nick, ":Nickname is registered: log in with PASS")
        if answer.reason in (Reason.WRONG_PASSWORD, Reason.TOO_MANY_TRIES, Reason.BUSY):
            self._password = None
            return self._numeric("464", ":Password incorrect")
        if answer.reason in (Reason.NAME_IN_USE, Reason.LOOKS_LIKE):
            return self._numeric("433", self.nick, ":Nickname is already in use")
        return self._numeric("432", self.nick, ":Erroneous nickname")

    def _welcome(self) -> bytes:
        nick = self.nick
        lines = [
            self._line("001", f"Welcome to {SERVER_NAME}, {nick}"),
            self._line("002", f"Your host is {SERVER_NAME}"),
            self._line("003", f"This server was created {_STARTED}"),
            self._line("004", SERVER_NAME, VERSION_STRING, "i", "io"),
        ]
        return irc_frame(b"".join(lines)) + self._isupport() + self._motd(()) + self._watch_away() + self.rejoin()

    def _isupport(self) -> bytes:
        return self._numeric("005", *ISUPPORT, ":are supported by this server")

    def _watch_away(self) -> bytes:
        """(away-notify) Watch presence: who goes away and comes back (see translate)."""
        if "away-notify" not in self.caps:
            return b""
        reply = self._rules.answer(Watch(True))
        assert isinstance(reply, bytes)
        return reply[frame_end(reply) :]  # (past the OK: who is away now)

    def _send(self, target: str, text: str, notice: bool, raw: bytes = b"") -> bytes:
        """``raw``: the text as the client sent it (UTF-8), when it was read whole."""
        answer = self._send_one(target, text, notice, raw)
        if self.away_shown and not self._rules.away:  # (ended by sending: chatroom's rule)
            self.away_shown = False
            answer += irc_frame(own_away_line(self.nick, False))
        return answer

    def _send_one(self, target: str, text: str, notice: bool, raw: bytes) -> bytes:
        if text[:1] == "\x01" and (notice or not text.startswith(CTCP_ACTION)):
            # CTCP but /me: chatroom's other clients would show it as code, and a reply (a
            # NOTICE) would reach an IRC client as a PRIVMSG, a request its client answers
            # again: not relayed, nor refused (clients give up on an unanswered request).
            return b""
        if target[:1] == "#":
            return self._to_channel(target, text, notice)
        name = to_name(target)
        if name is None:
            return b"" if notice else self._numeric("401", target, ":No such nick/channel")
        reply: bytes | Pending
        kept = False  # (for a registered user with no session: see OFFLINE_AWAY)
        echoing = "echo-message" in self.caps  # (the echo carries the message's id and time)
        if not echoing and relay_text is not None and relay_text(self._rules, name, text, raw):
            reply = OK  # (delivered the common way, compiled: see connection/relay.py)
        else:
            reply = self._rules.send_text(name, text, raw, with_id=echoing)
        if reply is not OK:  # (most are OK: delivered)
            answer = _decoded(reply)
            if answer.reason is Reason.NOT_ONLINE and (folded := self._online_ignoring_case(name)) is not None:
                name, answer = folded, self._sent(folded, text, raw, with_id=echoing)
            if answer.status is not Status.OK and answer.status is not Status.STORED:
                if notice:
                    return b""
                if answer.reason is Reason.INVALID_TEXT:
                    return self._numeric("412", ":No text to send")
                return self._numeric("401", target, ":No such nick/channel")
            kept = answer.status is Status.STORED
        # Delivered, or kept: the echo (echo-message) and whether they are away.
        echo = self._echo(target, text, notice, self._rules.sent) if echoing else b""
        away = None if notice else OFFLINE_AWAY if kept else self._rules.away_message(name)
        return echo if away is None else echo + self._numeric("301", target, ":" + (away or "Away"))

    def _echo(self, target: str, text: str, notice: bool, sent: tuple[int, int] | None) -> bytes:
        """IRCv3 echo-message: what the client sent, back to it once it is delivered (for a
        client that asked for it), with the id and time it was delivered with (``sent``)."""
        command = "NOTICE" if notice else "PRIVMSG"
        tags = tags_for(self) if sent is None else tags_for(self, sent[1], sent[0])
        return irc_frame(b"".join(privmsg_lines(source_of_nick(self.nick), target, text, tags, command)))

    def _tagmsg(self, _params) -> bytes:
        return b""  # (client-only tags, such as typing notifications: not relayed here)

    # --- Numerics -----------------------------------------------------------------------

    def _line(self, numeric: str, *params: str) -> bytes:
        return encode_line(numeric, self.nick, *params, source=SERVER_NAME)

    def _commands(self) -> list[str]:
        return list(_HANDLERS)

    def _numeric(self, numeric: str, *params: str) -> bytes:
        """A numeric reply; a last parameter given with its ':' is the text."""
        *head, last = params
        return irc_frame(self._line(numeric, *head, last.removeprefix(":")))


def _decoded(reply):
    """A reply of the rules as the message it stands for (a SENDTO to another node's user is
    waited for here: the IRC port does not batch them)."""
    if type(reply) is Pending:
        reply = reply.reply()
    if reply is OK:
        return _OK
    [answer] = Decoder.for_client().receive_data(reply)
    return answer


_HANDLERS = {
    "PING": IrcClient._ping,
    "PONG": IrcClient._pong,
    "QUIT": IrcClient._quit,
    "CAP": IrcClient._cap,
    "AUTHENTICATE": IrcClient._authenticate,
    "PASS": IrcClient._pass,
    "NICK": IrcClient._nick,
    "USER": IrcClient._user,
    "PRIVMSG": IrcClient._privmsg,
    "NOTICE": IrcClient._notice,
    "JOIN": IrcClient._join,
    "PART": IrcClient._part,
    "NAMES": IrcClient._names,
    "TOPIC": IrcClient._topic,
    "LIST": IrcClient._list,
    "KICK": IrcClient._kick,
    "INVITE": IrcClient._invite,
    "MODE": IrcClient._mode,
    "WHOIS": IrcClient._whois,
    "WHO": IrcClient._who,
    "ISON": IrcClient._ison,
    "USERHOST": IrcClient._userhost,
    **SERVER_QUERIES,
    "AWAY": IrcClient._away,
    "TAGMSG": IrcClient._tagmsg,
    "CHATHISTORY": IrcClient._chathistory,
    "MARKREAD": IrcClient._markread,
}
