"""The relay's common case compiled (server/connection/relay.py: _fanout.c's answer_sendtos)
answers a batch as the Python does, frame for frame: what every client reads, in order, and
what the history keeps, whatever mix of SENDTOs and other requests a batch holds."""

import contextlib
import dataclasses
import random
import time

import gevent
import pytest
from gevent import socket

from chatroom.codec import Decoder, encode, incoming_frame, split_frames, without_id
from chatroom.device_frames import OWN_MESSAGE
from chatroom.protocol import MAX_TEXT_CHARS, Authenticate, Hello, ListUsers, Login, Register, SendTo
from chatroom.room_frames import Join, RoomMessage
from chatroom.server import message_ids
from chatroom.server.connection import relay
from chatroom.server.connection import session as sessions
from chatroom.server.connection.limits import Limits
from chatroom.server.connection.session import Session
from chatroom.server.connection.streams import TcpStream
from chatroom.server.irc import session as irc_sessions
from chatroom.server.irc.lines import Privmsg
from chatroom.server.irc.session import IrcSession
from chatroom.server.operations.counts import COUNTS
from chatroom.server.presence.directory import LocalDirectory
from chatroom.server.replies import OK
from chatroom.server.rooms.registry import Rooms
from chatroom.server.storage.accounts import Accounts
from chatroom.server.storage.sqlite_store import SQLiteStore
from chatroom.testing import WAIT, kernel_socket_pair
from tests.conftest import CHEAP

needs_compiled = pytest.mark.skipif(sessions._answer_sendtos is None, reason="built without a C compiler")

# Who a SENDTO goes to: users in every state the relay meets, one not logged in, a room.
RECIPIENTS = ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "reg", "regd", "nobody", "#room")
TEXTS = ("hi", "été", "x" * MAX_TEXT_CHARS, "y" * (MAX_TEXT_CHARS + 1))


class _Server:
    """Sessions on one directory and store, each over a socket pair, driven by hand."""

    def __init__(self):
        self.directory = LocalDirectory()
        self.accounts = Accounts(SQLiteStore(":memory:", 7.0), hasher=CHEAP)
        self.accounts.start()
        self.rooms = Rooms(self.accounts.store)
        self.received: dict[str, bytearray] = {}
        self.sessions: dict[str, Session] = {}
        self._sockets: list[socket.socket] = []
        self._readers: list[gevent.Greenlet] = []

    def connect(self, name: str, *requests, sendq: int = 1 << 20) -> Session:
        return self.connect_with(Session, name, b"".join(encode(request) for request in requests), sendq)

    def connect_irc(self, nick: str, *lines: str) -> Session:
        return self.connect_with(IrcSession, nick, "".join(line + "\r\n" for line in lines).encode())

    def connect_with(self, kind: type, name: str, data: bytes, sendq: int = 1 << 20) -> Session:
        ours, theirs = kernel_socket_pair()
        self._sockets += [ours, theirs]
        received = self.received[name] = bytearray()
        self._readers.append(gevent.spawn(self._read, theirs, received))
        session = kind(
            TcpStream(ours),
            "127.0.0.1:40000",
            self.directory,
            Limits(sendq=sendq),
            lambda s: None,
            self.accounts,
            self.rooms,
        )
        assert session._serve_batch(data)
        self.sessions[name] = session
        return session

    @staticmethod
    def _read(sock, into: bytearray) -> None:
        while data := sock.recv(1 << 16):
            into += data

    def _read_to_the_end(self) -> None:
        """Once every session has sent all it queued, and ended its side: each client read all."""
        for session in self.sessions.values():
            session._outbox.finish(WAIT)
            session._stream.shut_down()
        gevent.joinall(self._readers, timeout=WAIT, raise_error=True)
        assert all(reader.dead for reader in self._readers), "a client still reading"

    def read_all(self) -> dict[str, list[bytes]]:
        """Every frame each client was sent, read to the end (once every session has sent all
        it queued), its id and time cut (they differ from run to run)."""
        self._read_to_the_end()
        read = {}
        for name, received in self.received.items():
            frames, size = split_frames(bytes(received))
            assert size == len(received)
            read[name] = [_without_own_id(without_id(frame)) for frame in frames]
        return read

    def read_all_bytes(self) -> dict[str, bytes]:
        """(For IRC clients: what each read, as it came.)"""
        self._read_to_the_end()
        return {name: bytes(received) for name, received in self.received.items()}

    def close(self):
        for session in self.sessions.values():
            session._end()  # (logged out: nothing of the server's holds it any more)
        gevent.killall(self._readers)
        self.accounts.stop()
        for sock in self._sockets:
            sock.close()


@contextlib.contextmanager
def served(kind: type, relayer_on: bool):
    """A server whose sessions of kind answer with the compiled relay or without it."""
    server = _Server()
    original = kind._relayer
    if not relayer_on:
        kind._relayer = lambda session: None
    try:
        with gevent.Timeout(WAIT * 3):
            yield server
    finally:
        kind._relayer = original
        server.close()


IRC_LINES = (
    "PRIVMSG gina :hi",
    "PRIVMSG gina :été",
    "PRIVMSG bob :hello",
    "PRIVMSG hank :are you there?",  # (away: the answer says so)
    "PRIVMSG alice :me",
    "PRIVMSG nobody :hi",
    "PRIVMSG gina,bob :both",
    "PRIVMSG #room :hi",
    "PRIVMSG #room :été",
    "PRIVMSG #theirs :not a member",
    "PRIVMSG #nowhere :no such channel",
    "@+draft/reply=1 PRIVMSG gina :tagged",
    "NOTICE gina :notice",
    "PRIVMSG gina :",
    "PRIVMSG =ZZZ :not a nick",
    "PING :x",
)


def one_irc_batch(relayer_on: bool, seed: int, sender_caps: tuple, registered: bool = False) -> tuple:
    """An IRC client's batch of 200 lines, mostly PRIVMSGs, answered with the compiled relay
    or without: what each client then reads, and (registered: alice logged in with PASS) the
    history she then has with gina and bob."""
    with served(IrcSession, relayer_on) as server:
        server.connect_irc("gina", "NICK gina", "USER g 0 * :g", "JOIN #room", "JOIN #theirs")
        server.connect_irc("hank", "NICK hank", "USER h 0 * :h", "AWAY :lunch")
        server.connect("bob", Login("bob"))
        caps = [f"CAP REQ :{' '.join(sender_caps)}"] if sender_caps else []
        password = []
        if registered:
            assert server.accounts.register("alice", "secret", "127.0.0.1") is None
            password = ["PASS secret"]
        server.connect_irc(
            "alice", "CAP LS 302", *caps, "CAP END", *password, "NICK alice", "USER a 0 * :a", "JOIN #room"
        )
        assert server.sessions["alice"].rules._registered is registered
        pick = random.Random(seed)
        lines = [pick.choice(IRC_LINES) for _ in range(200)]
        assert server.sessions["alice"]._serve_batch("".join(line + "\r\n" for line in lines).encode())
        read = server.read_all_bytes()
        history = [
            [(entry.sent, entry.text) for entry in server.accounts.history("alice", peer, 1000, 1 << 62)]
            for peer in ("gina", "bob")
        ]
        return read, history


@needs_compiled
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "sender_caps, registered",
    [((), False), (("echo-message",), False), (("away-notify",), False), ((), True)],
    ids=["plain", "echo-message", "away-notify", "registered"],
)
def test_an_irc_batch_is_answered_with_the_compiled_relay_as_without_it(seed, sender_caps, registered):
    compiled = one_irc_batch(True, seed, sender_caps, registered)
    assert compiled == one_irc_batch(False, seed, sender_caps, registered)
    read, history = compiled
    assert b"PRIVMSG gina :hi" in read["gina"] and b"301 alice hank" in read["alice"]
    assert all(history) if registered else not any(history)


def one_batch(relayer_on: bool, seed: int, sender_hello: tuple, away: bool = False, registered: str = "") -> tuple:
    """A sender's batch of 200 requests, mostly SENDTOs to everyone above, answered with the
    compiled relay or without: what each client then reads, the history kept, and who the
    sender and gina have written to or heard from (for presence). registered: "" (alice is
    not), "once" (on one device), "twice" (on two: what she sends is shown on the other)."""
    with served(Session, relayer_on) as server:
        server.connect("reg", Hello(1), Register("reg", "secret"))
        server.connect("regd", Hello(4), Register("regd", "secret"))  # (a registered user's devices)
        server.connect("bob", Login("bob"))
        server.connect("carol", Hello(3), Login("carol"))  # (takes DIRECT-MESSAGE, with ids)
        dave = server.connect("dave", Login("dave"))
        dave.rules.held = []  # (as while its stored messages are handed out)
        server.connect("erin", Login("erin"), sendq=100)  # (a queue that is soon full)
        frank = server.connect("frank", Login("frank"))
        frank._outbox.close()  # (as for a client being dropped)
        server.connect("gina", Hello(4), Login("gina"))  # (her devices: presence, ids)
        if registered:
            sender = server.connect("alice", *sender_hello, Register("alice", "secret"))
            if registered == "twice":
                server.connect("alice2", Hello(4), Authenticate("alice", "secret"))
        else:
            sender = server.connect("alice", *sender_hello, Login("alice"))
        if away:
            sender.rules._devices.away = True  # (as after AWAY: the next message ends it)
        pick = random.Random(seed)
        requests = [
            ListUsers() if pick.random() < 0.05 else SendTo(pick.choice(RECIPIENTS), pick.choice(TEXTS))
            for _ in range(200)
        ]
        assert sender._serve_batch(b"".join(encode(request) for request in requests))
        read = server.read_all()
        pairs = [("reg", "alice"), ("regd", "alice")]
        if registered:
            pairs += [("alice", "bob"), ("alice", "gina")]
        history = [
            [(entry.sent, entry.text) for entry in server.accounts.history(name, peer, 1000, 1 << 62)]
            for name, peer in pairs
        ]
        contacts = [
            sorted(devices.contacts) if (devices := session.rules._devices) else None
            for session in (sender, server.sessions["gina"])
        ]
        return read, history, contacts


@needs_compiled
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "sender_hello, away, registered",
    [
        ((), False, ""),
        ((Hello(2),), False, ""),
        ((Hello(3),), False, ""),
        ((Hello(4),), False, ""),
        ((Hello(4),), True, ""),
        ((Hello(1),), False, "once"),
        ((Hello(4),), False, "once"),
        ((Hello(4),), True, "once"),
        ((Hello(4),), False, "twice"),
    ],
    ids=["seed", "hello2", "hello3", "hello4", "hello4-away", "registered", "registered4", "registered4-away", "twice"],
)
def test_a_batch_is_answered_with_the_compiled_relay_as_without_it(seed, sender_hello, away, registered):
    compiled = one_batch(True, seed, sender_hello, away, registered)
    assert compiled == one_batch(False, seed, sender_hello, away, registered)
    read, history, contacts = compiled
    assert read["bob"] and read["erin"] and read["gina"]  # (the common case was met, and a full queue)
    assert all(history)  # (what the registered were sent, or sent, recorded)
    assert "alice" in contacts[1]  # (gina heard from alice)
    if registered == "twice":
        assert len(read["alice2"]) > 20  # (what alice sent, shown on her other device)


ROOM_TEXTS = ("hi", "été", "x" * 300, "y" * (MAX_TEXT_CHARS + 1), "")


def one_room_batch(relayer_on: bool, seed: int, sender_hello: Hello) -> tuple:
    """A member's batch of 200 requests to rooms: one of people here (one of them a user's
    devices, one being dropped), one the sender is not in, one that is not there, among
    messages to a user, texts too long or empty among them: what each client reads (times
    cut), each room's history and last id, and the counts of room messages and deliveries."""
    with served(Session, relayer_on) as server:
        for name, hello in [("bob", Hello(3)), ("gina", Hello(4))]:
            server.connect(name, hello, Login(name), Join("#room"), Join("#theirs"))
        server.connect("frank", Hello(3), Login("frank"), Join("#room"))._outbox.close()
        sender = server.connect("alice", sender_hello, Login("alice"), Join("#room"))
        pick = random.Random(seed)
        rooms = ("#room", "#room", "#room", "#theirs", "#nowhere", "bob")
        requests = [SendTo(pick.choice(rooms), pick.choice(ROOM_TEXTS)) for _ in range(200)]
        before = (COUNTS.room_messages, COUNTS.room_deliveries)
        assert sender._serve_batch(b"".join(encode(request) for request in requests))
        counted = (COUNTS.room_messages - before[0], COUNTS.room_deliveries - before[1])
        read = {name: [_without_room_time(frame) for frame in frames] for name, frames in server.read_all().items()}
        kept = {
            room: [(sender, text) for _id, _time, sender, text in server.accounts.store.room_history(room, 1000, 0)]
            for room in ("#room", "#theirs")
        }
        return read, kept, [server.rooms.get(room).last_id for room in ("#room", "#theirs")], counted


def _without_own_id(data: bytes) -> bytes:
    """An OWN-MESSAGE (what a user sent, shown on their other devices) without its id and time;
    any other frame as it is."""
    if data[:1] != bytes((OWN_MESSAGE,)):
        return data
    message = Decoder.for_client().receive_data(data)[0]
    return repr(dataclasses.replace(message, id=0, time_ms=0)).encode()


def _without_room_time(data: bytes) -> bytes:
    """A ROOM-MESSAGE without its time (which differs from run to run); any other frame as it is."""
    message = _room_message(data)
    return repr(dataclasses.replace(message, time_ms=0)).encode() if message else data


@needs_compiled
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("sender_hello", [Hello(3), Hello(4)], ids=["hello3", "hello4"])
def test_a_batch_to_rooms_is_answered_with_the_compiled_relay_as_without_it(seed, sender_hello):
    compiled, in_python = one_room_batch(True, seed, sender_hello), one_room_batch(False, seed, sender_hello)
    assert compiled == in_python
    read, kept, last_ids, counted = compiled
    assert kept["#room"] and counted[0] == len(kept["#room"]) == last_ids[0] and not kept["#theirs"]
    assert counted[1] == 3 * counted[0]  # (bob, gina and the sender: frank's outbox is closed)


@needs_compiled
def test_the_compiled_relay_posts_to_a_room_once_its_members_are_found():
    server = _Server()
    try:
        server.connect("bob", Hello(3), Login("bob"), Join("#room"))
        sender = server.connect("alice", Hello(3), Login("alice"), Join("#room"))
        events = [SendTo("#room", "one", b"one"), SendTo("#room", "two", b"two"), SendTo("#none", "x", b"x")]
        server.rooms.get("#room").sinks = None  # (as once the room's members change)
        assert sessions._answer_sendtos(events, 0, 3, sender) == 0  # (its members' sinks not found)
        assert sender.rules.answer(events[0]) == OK  # (the Python finds them)
        assert sessions._answer_sendtos(events, 1, 3, sender) == 2  # (then the C posts; no room: the Python)
        assert server.rooms.get("#room").last_id == 2
        old = server.connect("old", Login("old"))  # (a client without rooms: the Python says so)
        assert sessions._answer_sendtos(events, 0, 1, old) == 0
        read = server.read_all()
        assert [m.text for m in map(_room_message, read["bob"]) if m] == ["one", "two"]
    finally:
        server.close()


@needs_compiled
def test_the_compiled_relay_posts_an_irc_clients_privmsg_to_a_channel_it_is_in():
    server = _Server()
    try:
        server.connect_irc("gina", "NICK gina", "USER g 0 * :g", "JOIN #room")
        sender = server.connect_irc("alice", "NICK alice", "USER a 0 * :a", "JOIN #room")
        to = [Privmsg(None, channel, "hi", b"hi") for channel in ("#room", "#room", "#elsewhere")]
        assert irc_sessions._answer_privmsgs(to, 0, 3, sender) == 2  # (no such channel: the Python)
        assert server.rooms.get("#room").last_id == 2
        lines = server.read_all_bytes()["gina"].split(b"\r\n")
        assert lines.count(b":alice!alice@chatroom PRIVMSG #room :hi") == 2, lines
    finally:
        server.close()


def privmsgs_around_a_room_message_that_lets_a_nick_go_away(relayer_on: bool, monkeypatch) -> bytes:
    """alice's batch: two PRIVMSGs to gina, a room's message between them, and gina gone away
    while that message waited for the store (as when its writer is behind, others run
    meanwhile): what alice then reads."""
    with served(IrcSession, relayer_on) as server:
        gina = server.connect_irc("gina", "NICK gina", "USER g 0 * :g", "JOIN #room")
        alice = server.connect_irc("alice", "NICK alice", "USER a 0 * :a", "JOIN #room")
        store_type = type(server.accounts.store)
        record_room = store_type.record_room

        def waiting_while_gina_goes_away(store, *args):
            assert gina._serve_batch(b"AWAY :lunch\r\n")
            monkeypatch.setattr(store_type, "record_room", record_room)
            return record_room(store, *args)

        monkeypatch.setattr(store_type, "record_room", waiting_while_gina_goes_away)
        assert alice._serve_batch(b"PRIVMSG gina :one\r\nPRIVMSG #room :hi\r\nPRIVMSG gina :two\r\n")
        return server.read_all_bytes()["alice"]


@needs_compiled
def test_a_nick_that_went_away_while_a_rooms_message_waited_is_answered_as_away(monkeypatch):
    compiled = privmsgs_around_a_room_message_that_lets_a_nick_go_away(True, monkeypatch)
    assert compiled == privmsgs_around_a_room_message_that_lets_a_nick_go_away(False, monkeypatch)
    assert compiled.count(b" 301 alice gina :lunch") == 1, compiled


def sendtos_around_a_record_that_lets_the_sender_go_away(relayer_on: bool, monkeypatch) -> tuple:
    """Registered alice's batch of three SENDTOs to gina, alice gone away (from another of her
    devices) while the first waited for the history's record (as when its writer is behind,
    others run meanwhile): what each then reads, and whether alice is still away."""
    with served(Session, relayer_on) as server:
        server.connect("gina", Hello(4), Login("gina"))
        alice = server.connect("alice", Hello(4), Register("alice", "secret"))
        record = Accounts.record

        def waiting_while_alice_goes_away(accounts, *args):
            alice.rules._set_away("lunch")
            monkeypatch.setattr(Accounts, "record", record)
            return record(accounts, *args)

        monkeypatch.setattr(Accounts, "record", waiting_while_alice_goes_away)
        texts = ("one", "two", "three")
        assert alice._serve_batch(b"".join(encode(SendTo("gina", text)) for text in texts))
        away = alice.rules._devices.away
        return server.read_all(), away


@needs_compiled
def test_a_sender_gone_away_while_a_record_waited_is_back_with_its_next_message(monkeypatch):
    compiled = sendtos_around_a_record_that_lets_the_sender_go_away(True, monkeypatch)
    assert compiled == sendtos_around_a_record_that_lets_the_sender_go_away(False, monkeypatch)
    read, away = compiled
    assert not away  # (the second message ended it, as every message does)
    assert len(read["gina"]) == 2 + 3  # (her two OKs, then alice's three messages)


def _room_message(frame: bytes):
    message = Decoder.for_client().receive_data(frame)[0]
    return message if isinstance(message, RoomMessage) else None


@needs_compiled
def test_the_compiled_relay_stops_at_the_first_frame_it_does_not_answer():
    server = _Server()
    try:
        server.connect("bob", Login("bob"))
        sender = server.connect("alice", Login("alice"))
        events = [SendTo("bob", "one", b"one"), SendTo("nobody", "two", b"two"), SendTo("bob", "three", b"three")]
        outbox = sender._outbox
        assert sessions._answer_sendtos(events, 0, 3, sender) == 1
        assert sessions._answer_sendtos(events, 2, 3, sender) == 3
        assert sessions._answer_sendtos(events, 0, 1, sender) == 1  # (stop: a turn's end)
        assert outbox._frames is not None and len(outbox._frames) == 3  # (one OK for each relayed)
        assert sessions._answer_sendtos([ListUsers()], 0, 1, sender) == 0
        # Before a login, nothing is answered here.
        stranger = server.connect("stranger", ListUsers())
        assert sessions._answer_sendtos(events, 0, 3, stranger) == 0
    finally:
        server.close()


@needs_compiled
def test_one_text_is_relayed_the_common_way_or_left_to_the_python():
    """relay_text, the IRC port's: True once delivered (each side's presence told of the other),
    False with nothing done where the Python must answer."""
    server = _Server()
    try:
        server.connect("gina", Hello(4), Login("gina"))
        server.connect("bob", Login("bob"))
        sender = server.connect("alice", Hello(4), Login("alice"))
        assert relay.relay_text(sender.rules, "gina", "hi", b"hi") is True
        assert relay.relay_text(sender.rules, "bob", "hi", b"hi") is True
        assert relay.relay_text(sender.rules, "nobody", "hi", b"hi") is False
        assert relay.relay_text(object(), "gina", "hi", b"hi") is False  # (not the rules it knows)
        sender.rules._devices.away = True
        assert relay.relay_text(sender.rules, "gina", "back", b"back") is False  # (the Python ends the away)
        assert sender.rules._devices.contacts == {"gina", "bob"}
        assert server.sessions["gina"].rules._devices.contacts == {"alice"}
        read = server.read_all()
        assert [frame[:1] for frame in read["gina"][2:]] == [b"\x83"]  # (its id cut: see read_all)
        assert read["bob"][1:] == [incoming_frame("alice", b"hi")]
    finally:
        server.close()


@needs_compiled
def test_the_ids_the_compiled_relay_gives_increase_carry_the_nodes_tag_and_their_time():
    """(Its DIRECT-MESSAGEs take their ids in _message_ids.c's C, as next_id does.)"""
    server = _Server()
    message_ids.use_node_tag(0x5A7)
    try:
        server.connect("carol", Hello(3), Login("carol"))
        sender = server.connect("alice", Login("alice"))
        before = time.time_ns() // 1_000_000
        events = [SendTo("carol", f"{n}", f"{n}".encode()) for n in range(600)]  # (more than 256 a ms)
        assert sessions._answer_sendtos(events, 0, len(events), sender) == len(events)
        after = time.time_ns() // 1_000_000
        relayed = Decoder.for_client().receive_data(server.read_all_bytes()["carol"])[2:]
    finally:
        message_ids.use_node_tag(0)
        server.close()
    assert [message.text for message in relayed] == [f"{n}" for n in range(600)]
    ids = [message.id for message in relayed]
    assert ids == sorted(set(ids)) and all(message_id & 0xFFF == 0x5A7 for message_id in ids)
    assert all(message.time_ms == message_ids.time_of_id(message.id) for message in relayed)
    assert before <= relayed[0].time_ms and relayed[-1].time_ms <= after + len(ids) // 256 + 1


def test_every_kind_of_session_delivers_as_a_session_does():
    """(The compiled relay queues on any session made from Session as Session.deliver does.)"""
    kinds = Session.__subclasses__()
    assert kinds
    while kinds:
        kind = kinds.pop()
        assert kind.deliver is Session.deliver, kind
        kinds += kind.__subclasses__()
