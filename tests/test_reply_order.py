"""A reply made from a snapshot of shared state comes before the events that changed that
state while it was being made, over real sockets to an in-process server.

A snapshot's read may wait (for Redis in a cluster, for the disk): here it is made to wait
for the test, which changes the state meanwhile. Were the event to arrive first, the client
would apply it, and then the reply would undo it (a member shown leaving, then listed)."""

from dataclasses import replace

import gevent
import pytest
from gevent.event import Event

from chatroom import websocket_client
from chatroom.codec import Decoder
from chatroom.protocol import Authenticate, Hello, ListUsers, Login, Logout, Presence, SendTo, UserList, Watch
from chatroom.room_frames import EventKind, Join, ListMembers, MemberList, Part, RoomEvent
from chatroom.server import ChatServer
from chatroom.server.irc.history import HistoryCommands
from chatroom.server.presence.directory import LocalDirectory
from chatroom.server.rooms.registry import Rooms
from chatroom.server.storage.accounts import Accounts
from chatroom.server.storage.sqlite_store import SQLiteStore
from chatroom.testing import OK, WAIT, IrcPeer, Peer, hello_peer
from tests.conftest import CHEAP


class Stall:
    """Wraps a function so that its next call, once it has read what it returns, waits until
    let_go() (reached is set meanwhile): a read whose answer takes a while to come back."""

    def __init__(self, monkeypatch, owner, name: str, snapshot=lambda read: read):
        original = getattr(owner, name)
        self.reached, self._go = Event(), Event()
        self._armed = False

        def stalled(*args, **kwargs):  # (a function: a method of owner's, as the original)
            read = snapshot(original(*args, **kwargs))
            self._wait_if_armed()
            return read

        monkeypatch.setattr(owner, name, stalled)

    def arm(self):
        self._armed = True

    def let_go(self):
        self._go.set()

    def _wait_if_armed(self):
        if self._armed:
            self._armed = False
            self.reached.set()
            assert self._go.wait(WAIT), "never let go"


def told(peer, event) -> None:
    """Wait until peer is pushed event (passing over what comes before it)."""
    with gevent.Timeout(WAIT):
        while peer.next_push() != event:
            pass


@pytest.fixture
def chat(tmp_path):
    accounts = Accounts(SQLiteStore(str(tmp_path / "chat.db")), hasher=CHEAP)
    server = ChatServer("127.0.0.1", 0, accounts=accounts, irc=("127.0.0.1", 0), web=("127.0.0.1", 0))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def native(chat):
    """native(name, version=3, password=None) -> a Peer of chat logged in as name; all closed at the end."""
    made = []

    def connect(name, version=3, password=None):
        made.append(hello_peer(chat.address, version, name, password))
        return made[-1]

    yield connect
    for peer in made:
        peer.close()


class WebSocketPeer(Peer):
    """A Peer over a WebSocket (whose sends cannot be tried without waiting: the outbox's
    other way of sending)."""

    def __init__(self, web_address):
        self.sock = websocket_client.connect(web_address, timeout=WAIT)
        self.decoder = Decoder.for_client()
        self.events, self.pushed = [], []


@pytest.mark.parametrize("over", ["tcp", "websocket"])
def test_a_member_list_comes_before_a_part_made_while_it_was_read(chat, native, monkeypatch, over):
    if over == "tcp":
        alice = native("alice")
    else:
        alice = WebSocketPeer(chat.web_address)
        assert alice.reply(Hello(3)) == OK and alice.reply(Login("alice")) == OK
    bob, carol = native("bob"), native("carol")
    for peer in (alice, bob, carol):
        assert peer.reply(Join("#r")) == OK
    told(alice, RoomEvent("#r", EventKind.JOINED, "carol"))
    # A room as a cluster's node reads it: a copy of its state at the time.
    stall = Stall(monkeypatch, Rooms, "get", lambda room: replace(room, members=dict(room.members), sinks=None))
    stall.arm()
    alice.send(ListMembers("#r"))
    assert stall.reached.wait(WAIT)
    assert bob.reply(Part("#r")) == OK
    told(carol, RoomEvent("#r", EventKind.PARTED, "bob"))  # (it is out)
    stall.let_go()
    listed = alice.next_event()
    assert type(listed) is MemberList and "bob" in [name for name, _flags in listed.members]
    assert alice.next_event() == RoomEvent("#r", EventKind.PARTED, "bob")
    alice.close()


def test_a_user_list_comes_before_a_logout_seen_while_it_was_read(native, monkeypatch):
    alice, bob, carol = (native(name, version=1) for name in ("alice", "bob", "carol"))
    for peer in (alice, carol):
        assert peer.request(Watch(True)) == OK
        assert type(peer.next_event()) is Presence
    stall = Stall(monkeypatch, LocalDirectory, "names")
    stall.arm()
    alice.send(ListUsers())
    assert stall.reached.wait(WAIT)
    assert bob.request(Logout()) == OK
    assert carol.next_event() == Presence((("bob", False),))  # (the watchers are told)
    stall.let_go()
    assert alice.next_event() == UserList(("alice", "bob", "carol"))
    assert alice.next_event() == Presence((("bob", False),))


def away_while_a_message_came(native, *names) -> list:
    """Peers of those named, members of #r with alice, registered (a member across logouts),
    who logged out before the first of them said "missed" there."""
    alice = native("alice", password="pw")
    others = [native(name) for name in names]
    for peer in (alice, *others):
        assert peer.reply(Join("#r")) == OK
    assert alice.reply(Logout()) == OK
    assert others[0].reply(SendTo("#r", "missed")) == OK
    return others


def test_a_channel_rejoined_at_registration_comes_before_a_part_made_while_it_was_replayed(chat, native, monkeypatch):
    carol, bob = away_while_a_message_came(native, "carol", "bob")
    stall = Stall(monkeypatch, HistoryCommands, "replay_missed")
    stall.arm()
    irc = IrcPeer(chat.irc_address)
    try:
        irc.send("PASS pw", "NICK alice", "USER alice 0 * :alice")
        assert stall.reached.wait(WAIT)
        assert bob.reply(Part("#r")) == OK
        told(carol, RoomEvent("#r", EventKind.PARTED, "bob"))
        stall.let_go()
        lines = irc.until("PART")
        assert any(" 353 alice = #r :" in line and "bob" in line.split(":")[-1].split() for line in lines)
        assert "PRIVMSG #r :missed" in lines[-2] and lines[-1] == ":bob!bob@chatroom PART :#r"
    finally:
        irc.close()


def test_the_names_after_a_join_at_another_device_come_before_a_part_made_while_they_were_read(
    chat, native, monkeypatch
):
    bob = native("bob")
    assert bob.reply(Join("#r")) == OK
    native("alice", version=4, password="pw")  # (registered)
    irc = IrcPeer(chat.irc_address)
    try:
        irc.send("PASS pw", "NICK alice", "USER alice 0 * :alice")
        irc.until("422")
        phone = native(None, version=4)
        assert phone.reply(Authenticate("alice", "pw")) == OK
        stall = Stall(monkeypatch, Rooms, "get", lambda room: replace(room, members=dict(room.members), sinks=None))
        stall.arm()  # (for the names the IRC client is sent, read in a greenlet of their own)
        assert phone.reply(Join("#r")) == OK
        assert stall.reached.wait(WAIT)
        assert bob.reply(Part("#r")) == OK
        stall.let_go()
        lines = irc.until("PART")
        assert lines[0] == ":alice!alice@chatroom JOIN :#r"
        assert ":chatroom 353 alice = #r :@alice bob" in lines and lines[-1] == ":bob!bob@chatroom PART :#r"
    finally:
        irc.close()


def test_a_channels_message_posted_while_its_join_was_answered_comes_after_the_join(chat, native, monkeypatch):
    """(An IRC client shows a channel's lines once its JOIN has come: one before is lost to it,
    or shown out of place.)"""
    bob = native("bob")
    assert bob.reply(Join("#r")) == OK
    native("alice", password="pw").close()  # (registered: its unread counts are read at a JOIN)
    irc = IrcPeer(chat.irc_address)
    try:
        irc.send("PASS pw", "NICK alice", "USER alice 0 * :alice")
        irc.until("422")
        stall = Stall(monkeypatch, HistoryCommands, "unread")
        stall.arm()
        irc.send("JOIN #r", "PING :end")
        assert stall.reached.wait(WAIT)  # (a member now: the room's messages come to it)
        assert bob.reply(SendTo("#r", "during the join")) == OK
        stall.let_go()
        assert irc.until("PONG") == [
            ":alice!alice@chatroom JOIN :#r",
            ":chatroom 353 alice = #r :@alice bob",  # (a guest's room: the first registered member's)
            ":chatroom 366 alice #r :End of /NAMES list",
            ":bob!bob@chatroom PRIVMSG #r :during the join",
            ":chatroom PONG chatroom :end",
        ]
    finally:
        irc.close()


def test_a_message_that_comes_while_the_welcome_is_made_follows_it(chat, native, monkeypatch):
    """(The welcome's parts may wait, a cluster's watch of who is away among them: the user is
    logged in by then, and its messages come.)"""
    from chatroom.server.irc.client import IrcClient

    bob = native("bob")
    native("alice", password="pw").close()
    stall = Stall(monkeypatch, IrcClient, "_watch_away")
    stall.arm()
    irc = IrcPeer(chat.irc_address)
    try:
        irc.send("CAP LS 302", "CAP REQ :away-notify", "PASS pw", "NICK alice", "USER alice 0 * :alice", "CAP END")
        assert stall.reached.wait(WAIT)
        assert bob.reply(SendTo("alice", "during the welcome")) == OK
        stall.let_go()
        lines = irc.until("PRIVMSG")
        assert [line.split(" ")[1] for line in lines[-3:]] == ["005", "422", "PRIVMSG"]
        assert lines[-1] == ":bob!bob@chatroom PRIVMSG alice :during the welcome"
    finally:
        irc.close()


def test_what_a_member_missed_is_replayed_up_to_what_comes_to_it_live(chat, native, monkeypatch):
    """(A message posted once the user is logged in comes live: were it replayed too, the
    client would show it twice.)"""
    [bob] = away_while_a_message_came(native, "bob")
    stall = Stall(monkeypatch, HistoryCommands, "unread")
    stall.arm()
    irc = IrcPeer(chat.irc_address)
    try:
        irc.send("PASS pw", "NICK alice", "USER alice 0 * :alice", "PING :end")
        assert stall.reached.wait(WAIT)  # (logged in: the room's messages come to it)
        assert bob.reply(SendTo("#r", "live")) == OK
        stall.let_go()
        lines = irc.until("PONG")
        assert lines[lines.index(":alice!alice@chatroom JOIN :#r") + 3 :] == [
            ":bob!bob@chatroom PRIVMSG #r :missed",
            ":bob!bob@chatroom PRIVMSG #r :live",
            ":chatroom PONG chatroom :end",
        ]
    finally:
        irc.close()


def test_what_comes_between_a_sasl_login_and_the_welcome_follows_the_welcome(chat, native):
    """(With SASL the user is logged in before registration ends: a message then, direct or to a
    room, waits for the welcome and the channel's JOIN; one the replay brings comes once.)"""

    [bob] = away_while_a_message_came(native, "bob")
    irc = IrcPeer(chat.irc_address)
    try:
        irc.log_in_by_sasl("alice", "pw")
        assert bob.reply(SendTo("alice", "direct")) == OK
        assert bob.reply(SendTo("#r", "to the room")) == OK
        irc.send("PING :before")  # (what came meanwhile has been sent by the time this is answered)
        assert irc.until("PONG") == [":chatroom PONG chatroom :before"]
        irc.send("CAP END", "PING :after")
        lines = irc.until("PONG")
        assert lines[0].split(" ")[1] == "001"
        after_join = lines[lines.index(":alice!alice@chatroom JOIN :#r") + 3 :]
        assert after_join == [
            ":bob!bob@chatroom PRIVMSG #r :missed",
            ":bob!bob@chatroom PRIVMSG #r :to the room",
            ":bob!bob@chatroom PRIVMSG alice :direct",
            ":chatroom PONG chatroom :after",
        ]
    finally:
        irc.close()
