"""The IRC port's channels under random room requests from IRC and native clients, one of them
another device of an IRC client's user (joins, parts, removals, invitations, hand-overs,
invite-only, topics, messages, quits): what each IRC client's lines tell it (the channels it
is in, their members, the operator) is what the server holds, and every line is one IRC
line."""

import random

import gevent
import irctokens
import pytest
from gevent import socket

from chatroom.protocol import Authenticate, Hello, Login, Register, Response
from chatroom.room_frames import ListMembers, MemberFlag, MemberList
from chatroom.testing import OK, WAIT, Peer, hello_peer
from chatroom.testing.waiting import eventually
from tests.test_rooms_random import ROOM_ACTIONS, room_request

pytestmark = pytest.mark.process

ROOMS = ["#x", "#y", "#z"]
# i*: IRC clients, n*: native ones; *c: guests. ia has a native device too (its joins and parts
# there are shown to its IRC client as another device's).
NAMES = ["ia", "ib", "ic", "nb", "nc"]


class IrcView:
    """An IRC client, and its channels as its lines tell it: channel -> {nick: operator}."""

    def __init__(self, address, nick: str, password: str | None):
        self.address, self.nick, self.password = address, nick, password
        self.connect()

    def connect(self) -> None:
        self.sock = socket.create_connection(self.address)  # (gevent's: read by a greenlet)
        self.channels: dict[str, dict[str, bool]] = {}
        if self.password:
            self.send(f"PASS {self.password}")
        self.send(f"NICK {self.nick}", f"USER {self.nick} 0 * :{self.nick}")
        self.reader = gevent.spawn(self._read)

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def close(self) -> None:
        self.reader.kill()
        self.sock.close()

    def _read(self) -> None:
        buffered = b""
        while data := self.sock.recv(65536):
            buffered += data
            *lines, buffered = buffered.split(b"\r\n")
            for line in lines:
                assert b"\n" not in line and b"\0" not in line and len(line) + 2 <= 512, line
                self._take(irctokens.tokenise(line.decode()))

    def _take(self, line) -> None:
        source, params, channels = line.hostmask.nickname if line.source else None, line.params, self.channels
        if line.command == "JOIN":
            if source == self.nick:
                channels[params[0]] = {}
            elif params[0] in channels:
                channels[params[0]][source] = False
        elif line.command == "353":
            for word in params[3].split():
                channels.setdefault(params[2], {})[word.lstrip("@")] = word.startswith("@")
        elif line.command in ("PART", "KICK"):
            gone = source if line.command == "PART" else params[1]
            if gone == self.nick:
                channels.pop(params[0], None)
            else:
                channels.get(params[0], {}).pop(gone, None)
        elif line.command == "QUIT":
            for members in channels.values():
                members.pop(source, None)
        elif line.command == "MODE" and params[0] in channels:
            sign, nicks = "+", iter(params[2:])
            for letter in params[1]:
                if letter in "+-":
                    sign = letter
                elif letter == "o" and (nick := next(nicks)) in channels[params[0]]:
                    channels[params[0]][nick] = sign == "+"  # (as clients do: of a member only)

    def act(self, rng, step) -> None:
        room, other = rng.choice(ROOMS), rng.choice(NAMES)
        action = rng.choice(["join", "join", "part", "kick", "invite", "op", "mode", "topic", "say", "quit"])
        if action == "quit":
            self.send("QUIT :bye")
            self.reader.join(timeout=WAIT)
            self.close()
            self.connect()
            return
        self.send(
            {
                "join": f"JOIN {room}",
                "part": f"PART {room} :bye",
                "kick": f"KICK {room} {other}",
                "invite": f"INVITE {other} {room}",
                "op": f"MODE {room} +o {other}",
                "mode": f"MODE {room} {rng.choice(['+i', '-i'])}",
                "topic": f"TOPIC {room} :topic {step}",
                "say": f"PRIVMSG {room} :hi {step}",
            }[action]
        )


class NativeClient:
    def __init__(self, address, name: str, password: str | None):
        self.peer = Peer(address)
        assert self.peer.reply(Hello(4)) == OK
        if password is None:
            assert self.peer.reply(Login(name)) == OK
        elif self.peer.reply(Authenticate(name, password)) != OK:
            assert self.peer.reply(Register(name, password)) == OK

    def act(self, rng, step) -> None:
        action = rng.choice(["join", *ROOM_ACTIONS])
        request = room_request(action, rng.choice(ROOMS), rng.choice(NAMES), rng, step)
        assert isinstance(self.peer.reply(request), Response)


def held_by_the_server(address, natives) -> dict:
    """Each room's members, whether each owns it: as a native member sees it, or an outsider
    (None for an invite-only room none of them is in)."""
    outsider = Peer(address)
    assert outsider.reply(Hello(4)) == OK and outsider.reply(Login("outsider")) == OK
    held = {}
    for room in ROOMS:
        answers = [peer.reply(ListMembers(room)) for peer in [*natives, outsider]]
        members = next((answer for answer in answers if isinstance(answer, MemberList)), None)
        held[room] = members and {name: bool(flags & MemberFlag.OWNER) for name, flags in members.members}
    outsider.close()
    return held


def test_irc_clients_see_their_channels_as_the_server_holds_them(irc_server):
    for name in ("ia", "ib"):
        hello_peer(irc_server.address, 4, name, "pw").close()
    ircs = [
        IrcView(irc_server.irc_address, nick, password) for nick, password in (("ia", "pw"), ("ib", "pw"), ("ic", None))
    ]
    natives = [
        NativeClient(irc_server.address, name, password)
        for name, password in (("ia", "pw"), ("nb", "pw"), ("nc", None))
    ]
    rng = random.Random(12)  # (one that hands a room on to a member who stays, and joins at ia's device)
    for step in range(250):
        rng.choice(ircs + natives).act(rng, step)
        gevent.sleep(0.002)  # (a pace, not a wait: the requests interleave with what comes back)

    def seen_as_held() -> bool:
        held = held_by_the_server(irc_server.address, [native.peer for native in natives])
        for view in ircs:
            for room, members in held.items():
                if members is not None and view.channels.get(room) != (members if view.nick in members else None):
                    return False
        return True

    eventually(seen_as_held, what="every IRC client's channels as the server holds them")
    assert all(not view.reader.dead for view in ircs)  # (no line it could not read)
    for view in ircs:
        view.close()
    for native in natives:
        native.peer.close()
    assert "Traceback" not in irc_server.log_text()
