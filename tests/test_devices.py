"""One account on several devices (extension version 4), without sockets: sessions, one's own
messages shown on one's other sessions, read markers and unread counts."""

import pytest

from chatroom.device_frames import (
    Away,
    EndSession,
    Mark,
    Marked,
    OwnMessage,
    PresenceState,
    PresenceStatus,
    SessionFlag,
    SessionList,
    Sessions,
    Unread,
    UnreadCounts,
    UnreadEntry,
)
from chatroom.protocol import (
    Authenticate,
    ChangePassword,
    DirectMessage,
    Hello,
    ListUsers,
    Login,
    Logout,
    Reason,
    Register,
    Response,
    SendTo,
    Status,
    UserList,
    Watch,
)
from chatroom.room_frames import Join, RoomMessage
from chatroom.server.storage.accounts import Accounts
from chatroom.server.storage.quotas import Quotas
from chatroom.server.storage.sqlite_store import SQLiteStore
from chatroom.testing import MALFORMED, OK, failure
from tests.conftest import CHEAP
from tests.test_rules import Client


@pytest.fixture
def device(directory, accounts, rooms):
    """device(name, version=4) -> a new connection's Client, logged in to the registered name
    with its password (registering it first if nobody has)."""

    def connect(name, version=4, peer="127.0.0.1:40000"):
        client = Client(directory, accounts, peer, rooms=rooms)
        assert client.ask(Hello(version)) == [OK]
        if name not in accounts.registered_names:
            assert client.ask(Register(name, "secret")) == [OK]
        else:
            assert client.ask(Authenticate(name, "secret")) == [OK]
        return client

    return connect


def test_a_registered_user_logs_in_from_several_devices_and_is_listed_once(device):
    laptop, phone = device("alice"), device("alice", peer="10.0.0.2:5000")
    bob = device("bob")
    assert bob.ask(ListUsers()) == [UserList(("alice", "bob"))]
    assert bob.ask(SendTo("alice", "to both")) == [OK]
    for session in (laptop, phone):
        [message] = session.messages()
        assert type(message) is DirectMessage and (message.sender, message.text) == ("bob", "to both")
    assert laptop.messages()[0].id == phone.messages()[0].id


def test_what_one_device_sends_shows_on_the_others_as_ones_own(device):
    laptop, phone, tablet = device("alice"), device("alice"), device("alice")
    bob = device("bob")
    assert laptop.ask(SendTo("bob", "from the laptop")) == [OK]
    [received] = bob.messages()
    for other in (phone, tablet):
        assert other.messages() == [OwnMessage("bob", received.id, received.time_ms, "from the laptop")]
    assert laptop.messages() == []  # (its own screen shows it already)


def test_a_message_kept_for_someone_away_shows_on_the_other_devices_too(device, accounts):
    device("carol").ask(Logout())
    laptop, phone = device("alice"), device("alice")
    assert laptop.ask(SendTo("carol", "while you were out")) == [Response(Status.STORED)]
    [shown] = phone.messages()
    assert type(shown) is OwnMessage and (shown.recipient, shown.text) == ("carol", "while you were out")


def test_a_room_message_reaches_every_device_of_every_member(device):
    laptop, phone = device("alice"), device("alice")
    bob = device("bob")
    assert laptop.ask(Join("#team")) == [OK] and bob.ask(Join("#team")) == [OK]
    for session in (laptop, phone, bob):
        session.received.clear()
    assert bob.ask(SendTo("#team", "hello team")) == [OK]
    for session in (laptop, phone):
        assert [(m.sender, m.text) for m in session.messages() if type(m) is RoomMessage] == [("bob", "hello team")]
    assert phone.ask(SendTo("#team", "from the phone")) == [OK]
    assert [m.text for m in laptop.messages() if type(m) is RoomMessage][-1] == "from the phone"
    # One device logs out: the room's messages go on reaching the other, and only it.
    assert phone.ask(Logout()) == [OK]
    laptop.received.clear()
    phone.received.clear()
    assert bob.ask(SendTo("#team", "who is left?")) == [OK]
    assert [m.text for m in laptop.messages() if type(m) is RoomMessage] == ["who is left?"]
    assert phone.messages() == []


def test_an_unregistered_name_and_older_clients_stay_one_connection(device, hello_client):
    hello_client("dave", version=4)
    assert hello_client(version=4).ask(Login("dave")) == [failure(Reason.NAME_IN_USE)]
    device("erin", version=3)  # a client of version 3 holds the name alone, as before
    newer = hello_client(version=4)
    assert newer.ask(Authenticate("erin", "secret")) == [failure(Reason.NAME_IN_USE)]
    device("frank")  # and a device of version 4 keeps the name from a client of version 3
    assert hello_client(version=3).ask(Authenticate("frank", "secret")) == [failure(Reason.NAME_IN_USE)]


def test_sessions_are_listed_and_one_can_be_ended_from_another(device):
    laptop = device("alice", peer="10.0.0.1:1000")
    phone = device("alice", peer="10.0.0.2:2000")
    [listing] = phone.ask(Sessions())
    assert type(listing) is SessionList
    assert [(s.number, s.flags, s.address) for s in listing.sessions] == [
        (1, SessionFlag(0), "10.0.0.1:1000"),
        (2, SessionFlag.THIS, "10.0.0.2:2000"),
    ]
    assert phone.ask(EndSession(7)) == [failure(Reason.NO_SUCH_SESSION)]
    assert phone.ask(EndSession(1)) == [OK]
    assert laptop.ended  # (the session then logs out, as below)


def test_a_new_password_ends_the_accounts_other_sessions(device):
    laptop, phone, tablet = device("alice"), device("alice"), device("alice")
    assert phone.ask(ChangePassword("wrong", "new secret")) == [failure(Reason.WRONG_PASSWORD)]
    assert not (laptop.ended or tablet.ended)
    assert phone.ask(ChangePassword("secret", "new secret")) == [OK]
    assert laptop.ended and tablet.ended and not phone.ended


def test_logging_out_one_device_keeps_the_others(device, directory):
    laptop, phone = device("alice"), device("alice")
    bob = device("bob")
    assert laptop.ask(Logout()) == [OK]
    assert bob.ask(ListUsers()) == [UserList(("alice", "bob"))]
    assert bob.ask(SendTo("alice", "still there?")) == [OK]
    assert [m.text for m in phone.messages()] == ["still there?"]
    assert laptop.messages() == []
    assert phone.ask(Logout()) == [OK]
    assert bob.ask(ListUsers()) == [UserList(("bob",))]
    assert directory.find("alice") is None


def test_the_number_of_sessions_has_a_limit(directory, rooms):
    accounts = Accounts(SQLiteStore(":memory:"), hasher=CHEAP, quotas=Quotas(sessions_per_account=2))
    accounts.start()
    try:
        sessions = []
        for _ in range(3):
            client = Client(directory, accounts, "127.0.0.1:40000", rooms=rooms)
            client.ask(Hello(4))
            sessions.append(client)
        assert sessions[0].ask(Register("alice", "secret")) == [OK]
        assert sessions[1].ask(Authenticate("alice", "secret")) == [OK]
        assert sessions[2].ask(Authenticate("alice", "secret")) == [failure(Reason.TOO_MANY_SESSIONS, "2")]
    finally:
        accounts.stop()


def test_a_marker_moves_forward_only_and_shows_on_the_other_devices(device):
    laptop, phone = device("alice"), device("alice")
    assert laptop.ask(Mark("bob", 500)) == [OK]
    assert phone.messages() == [Marked("bob", 500)]
    assert phone.ask(Mark("bob", 300)) == [OK]  # an older message shown: the marker stays
    assert laptop.messages() == [Marked("bob", 500)]
    assert laptop.ask(Mark("no such name!", 1)) == [failure(Reason.INVALID_NAME)]


def test_unread_counts_start_after_the_marker_and_leave_out_ones_own(device):
    alice, bob, carol = device("alice"), device("bob"), device("carol")
    assert alice.ask(Join("#team")) == [OK] and carol.ask(Join("#team")) == [OK]
    for i in range(3):
        assert bob.ask(SendTo("alice", f"b{i}")) == [OK]
    assert alice.ask(SendTo("bob", "mine")) == [OK]  # not unread: alice's own
    for i in range(2):
        assert carol.ask(SendTo("#team", f"c{i}")) == [OK]
    assert alice.ask(Unread()) == [UnreadCounts((UnreadEntry("#team", 0, 2), UnreadEntry("bob", 0, 3)))]
    from_bob = [m for m in alice.messages() if type(m) is DirectMessage]
    team = [m for m in alice.messages() if type(m) is RoomMessage and m.sender == "carol"]
    assert alice.ask(Mark("bob", from_bob[1].id)) == [OK]
    assert alice.ask(Mark("#team", team[1].id)) == [OK]
    assert alice.ask(Unread()) == [
        UnreadCounts((UnreadEntry("#team", team[1].id, 0), UnreadEntry("bob", from_bob[1].id, 1)))
    ]


def test_an_account_has_markers_for_a_thousand_conversations_at_most(device):
    from chatroom.device_frames import MOST_MARKERS

    alice = device("alice")
    for number in range(MOST_MARKERS):
        assert alice.ask(Mark(f"u{number}", 7)) == [OK]
    assert alice.ask(Mark("another", 7)) == [failure(Reason.TOO_MANY_MARKERS, "1000")]
    assert alice.ask(Mark("#another", 7)) == [failure(Reason.TOO_MANY_MARKERS, "1000")]
    assert alice.ask(Mark("u5", 9)) == [OK]  # (those it has still move)
    [counts] = alice.ask(Unread())
    assert len(counts.entries) == MOST_MARKERS and UnreadEntry("u5", 9, 0) in counts.entries


def test_unread_counts_fit_one_frame_those_with_something_unread_first():
    from chatroom.codec import Decoder, encode
    from chatroom.device_frames import fitting_in_a_frame
    from chatroom.protocol import MAX_BODY

    few = [UnreadEntry("bob", 3, 0), UnreadEntry("carol", 0, 2)]
    assert fitting_in_a_frame(few) == tuple(few)  # (as they are, where all fit)
    many = [UnreadEntry(f"{number:020}", number, number % 2) for number in range(10_000)]  # (330 KB)
    fitting = fitting_in_a_frame(many)
    frame = encode(UnreadCounts(fitting))
    assert len(frame) - 5 <= MAX_BODY < len(frame) - 5 + 30  # (as many as fit)
    assert [entry for entry in fitting if entry.count] == [entry for entry in many if entry.count]
    assert Decoder.for_client().receive_data(frame) == [UnreadCounts(fitting)]


def test_device_requests_need_version_4_and_markers_an_account(device, hello_client):
    older = device("alice", version=3)
    assert older.ask(Sessions()) == [MALFORMED]
    guest = hello_client("guest", version=4)
    assert guest.ask(Mark("alice", 1)) == [failure(Reason.NOT_REGISTERED)]
    assert guest.ask(Unread()) == [failure(Reason.NOT_REGISTERED)]
    [listing] = guest.ask(Sessions())  # one connection, listed as one session
    assert [s.flags for s in listing.sessions] == [SessionFlag.THIS]


# --- Presence with away (version 4) -----------------------------------------------------------


@pytest.fixture
def fast_watch(monkeypatch):
    from chatroom.server.presence import watch

    monkeypatch.setattr(watch, "PERIOD", 0.05)


def test_presence_tells_of_those_one_shares_a_conversation_or_a_room_with_and_their_away(
    device, hello_client, fast_watch
):
    alice, carol, dave = device("alice"), device("carol"), device("dave")
    assert carol.ask(SendTo("alice", "hi")) == [OK]  # a conversation (kept in the history)
    assert alice.ask(Join("#team")) == [OK] and dave.ask(Join("#team")) == [OK]  # a room
    stranger = hello_client("bob", version=4)  # shares nothing with alice
    watcher = device("alice")  # another of alice's devices
    [ok, everyone] = watcher.ask(Watch(True))
    online = (PresenceState.ONLINE, "")
    assert everyone == PresenceStatus((("alice", *online), ("carol", *online), ("dave", *online)))
    assert carol.ask(Away(True, "lunch")) == [OK]
    assert stranger.ask(Away(True, "not for alice")) == [OK]
    assert watcher.next_of(PresenceStatus) == PresenceStatus((("carol", PresenceState.AWAY, "lunch"),))
    assert carol.ask(SendTo("alice", "back now")) == [OK]  # sending ends being away
    assert watcher.next_of(PresenceStatus) == PresenceStatus((("carol", *online),))
    assert dave.ask(Away(True)) == [OK] and dave.ask(Away(False)) == [OK]  # away and back within the second
    assert carol.ask(Logout()) == [OK]
    assert watcher.next_of(PresenceStatus) == PresenceStatus((("carol", PresenceState.OFFLINE, ""),))


def test_a_message_received_makes_its_sender_one_whose_away_is_told(hello_client, fast_watch):
    """(Unregistered: no history to find the conversation in, only the message as it came.)"""
    bob, carol = hello_client("bob", version=4), hello_client("carol", version=4)
    [ok, everyone] = bob.ask(Watch(True))
    assert everyone == PresenceStatus((("bob", PresenceState.ONLINE, ""),))
    assert carol.ask(SendTo("bob", "hi")) == [OK]
    assert carol.ask(Away(True, "lunch")) == [OK]
    assert bob.next_of(PresenceStatus) == PresenceStatus((("carol", PresenceState.AWAY, "lunch"),))


def test_only_someone_written_to_becomes_a_contact(hello_client, device):
    """A message to a name nobody has is no conversation: a client writing to made-up names in
    a loop does not grow what its presence is checked against. A stored one is."""
    bob = hello_client("bob", version=4)
    for number in range(100):
        assert bob.ask(SendTo(f"nobody{number}", "hi")) == [failure(Reason.NOT_ONLINE)]
    assert bob.ask(SendTo("#made-up", "hi"))[0].reason is Reason.NO_SUCH_ROOM
    device("away").rules.log_out("gone")
    hello_client("carol", version=4)
    assert bob.ask(SendTo("away", "later")) == [Response(Status.STORED)]
    assert bob.ask(SendTo("carol", "hi")) == [OK]
    assert bob.rules._devices.contacts == {"away", "carol"}


def test_an_older_watcher_hears_only_who_comes_and_goes(device, hello_client, fast_watch):
    from chatroom.protocol import Presence

    carol = device("carol")
    old = hello_client("erin", version=3)
    assert old.ask(Watch(True)) == [OK, Presence((("carol", True), ("erin", True)))]
    assert carol.ask(Away(True, "lunch")) == [OK]
    device("frank")
    assert old.next_of(Presence) == Presence((("frank", True),))  # (carol's away is not said)


def test_away_needs_a_login_and_a_short_valid_message(device, hello_client):
    assert hello_client(version=4).ask(Away(True, "x")) == [failure(Reason.NOT_LOGGED_IN)]
    alice = device("alice")
    assert alice.ask(Away(True, "x" * 101)) == [failure(Reason.INVALID_TEXT)]
    for broken in ("out\nPRIVMSG bob :x", "a\rb", "a\0b"):  # (one line, wherever it is shown)
        assert alice.ask(Away(True, broken)) == [failure(Reason.INVALID_TEXT)]
    assert alice.ask(Away(True, "")) == [OK]  # (a message is optional)
