"""Rooms (extension version 3), the rules without sockets: the in-process directory and rooms
over an in-memory (or, for a restart, an on-disk) SQLite store."""

import pytest

from chatroom.codec import Decoder, encode
from chatroom.protocol import (
    Authenticate,
    Hello,
    HistoryRequest,
    Login,
    Logout,
    Reason,
    Register,
    Response,
    SendTo,
    Status,
)
from chatroom.room_frames import (
    EventKind,
    GiveRoom,
    Invite,
    Join,
    Kick,
    ListMembers,
    ListRooms,
    MemberFlag,
    MemberList,
    Part,
    RoomEntry,
    RoomEvent,
    RoomFlag,
    RoomHistory,
    RoomList,
    RoomMessage,
    SetInviteOnly,
    SetTopic,
)
from chatroom.server.rooms.registry import Rooms
from chatroom.server.storage.accounts import Accounts
from chatroom.server.storage.quotas import DailyBytes, Quotas
from chatroom.server.storage.sqlite_store import SQLiteStore
from chatroom.server.storage.store import now_ms
from chatroom.testing import FAILURE, OK, failure
from tests.conftest import CHEAP
from tests.test_rules import Client


@pytest.fixture
def connect(hello_client):
    return hello_client


def events(client, kind=None):
    got = Decoder.for_client().receive_data(b"".join(client.received))
    client.received.clear()
    return [e for e in got if kind is None or isinstance(e, kind)]


def test_the_frames_round_trip():
    for message in [Join("#a"), Part("#a"), ListRooms(), ListMembers("#a"), SetTopic("#a", "hi"), Kick("#a", "b")]:
        assert Decoder.for_server().receive_data(encode(message)) == [message]
    for message in [Invite("#a", "b"), SetInviteOnly("#a", True), GiveRoom("#a", "b")]:
        assert Decoder.for_server().receive_data(encode(message)) == [message]
    for message in [
        RoomMessage("#a", "bob", 7, 1000, "hi"),
        RoomList((RoomEntry("#a", RoomFlag.MEMBER | RoomFlag.OWNER, 3),)),
        MemberList("#a", "the topic", (("bob", MemberFlag.ONLINE),)),
        RoomEvent("#a", EventKind.TOPIC, "bob", "new"),
    ]:
        assert Decoder.for_client().receive_data(encode(message)) == [message]
    assert encode(Join("#a")) == b"\x0d\x00\x00\x00\x02#a"
    assert encode(RoomMessage("#a", "b", 1, 2, "x")) == (
        b"\x89\x00\x00\x00\x16\x02#a\x01b" + (1).to_bytes(8, "big") + (2).to_bytes(8, "big") + b"x"
    )


def test_a_name_beginning_with_a_hash_is_no_username_for_any_client(connect, directory, accounts):
    seed = Client(directory, accounts)
    assert seed.ask(Login("#team")) == [FAILURE]
    assert connect().ask(Login("#team")) == [failure(Reason.INVALID_NAME)]


def test_join_creates_a_room_its_registered_creator_owns_and_members_hear_of_joins(connect):
    alice, bob = connect("alice", register=True), connect("bob")
    assert alice.ask(Join("#team")) == [OK]
    assert bob.ask(Join("#team")) == [OK]
    assert RoomEvent("#team", EventKind.JOINED, "bob") in events(alice)
    assert alice.ask(ListMembers("#team")) == [
        MemberList("#team", "", (("alice", MemberFlag.ONLINE | MemberFlag.OWNER), ("bob", MemberFlag.ONLINE)))
    ]
    assert bob.ask(ListRooms()) == [RoomList((RoomEntry("#team", RoomFlag.MEMBER, 2),))]
    carol = connect("carol")
    assert carol.ask(Join("#open")) == [OK]  # an unregistered creator owns nothing
    assert carol.ask(SetTopic("#open", "mine?")) == [failure(Reason.NOT_OWNER)]


def test_every_member_gets_a_rooms_messages_in_the_order_of_their_ids(connect):
    members = [connect(name) for name in ("ann", "ben", "cat")]
    for member in members:
        assert member.ask(Join("#r")) == [OK]
    for member in members:
        events(member)
    for n in range(5):
        for member in members:
            assert member.ask(SendTo("#r", f"{member.rules.name} {n}")) == [OK]
    seen = [[(m.id, m.sender, m.text) for m in events(member, RoomMessage)] for member in members]
    assert seen[0] == seen[1] == seen[2] and len(seen[0]) == 15
    assert [message_id for message_id, _, _ in seen[0]] == list(range(1, 16))


def test_a_logout_the_rooms_cannot_hear_of_still_frees_the_name(connect, rooms, directory, caplog, monkeypatch):
    """A cluster's Redis busy or gone at a logout: the name is released all the same (said in
    the log, without a traceback), or it would stay taken."""
    from chatroom.server.presence.directory import DirectoryUnavailable

    alice = connect("alice")
    alice.ask(Join("#r"))

    def unavailable(name):
        raise DirectoryUnavailable()

    monkeypatch.setattr(rooms, "leave_all_unregistered", unavailable)
    assert alice.rules.log_out("disconnected")
    assert directory.find("alice") is None
    assert "its rooms could not be told" in caplog.text and "Traceback" not in caplog.text
    connect("alice")  # (the name is free again)


def test_room_messages_need_membership_and_version_3(connect):
    alice = connect("alice")
    alice.ask(Join("#r"))
    bob = connect("bob")
    assert bob.ask(SendTo("#r", "hi")) == [failure(Reason.NOT_A_MEMBER)]
    assert bob.ask(SendTo("#nowhere", "hi")) == [failure(Reason.NO_SUCH_ROOM)]
    old = connect("old", version=2)
    assert old.ask(Join("#r")) == [Response(Status.MALFORMED)]  # an unknown type to it
    assert old.ask(SendTo("#r", "hi")) == [failure(Reason.NOT_ONLINE)]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("#", Reason.INVALID_ROOM),
        ("#" + "x" * 21, Reason.INVALID_ROOM),
        ("#a\u200bb", Reason.INVALID_ROOM),
        ("team", Reason.INVALID_ROOM),
        ("##x", Reason.INVALID_ROOM),
    ],
)
def test_hostile_room_names_are_refused_with_a_reason(connect, name, reason):
    alice = connect("alice")
    assert alice.ask(Join(name)) == [failure(reason)]
    assert alice.ask(Part(name)) == [failure(reason)]  # (not "no such room": it could be none)


def test_a_room_name_confusable_with_an_existing_one_is_refused(connect):
    alice = connect("alice")
    assert alice.ask(Join("#team")) == [OK]
    bob = connect("bob")
    assert bob.ask(Join("#t\u0435am")) == [failure(Reason.LOOKS_LIKE, "#team")]  # Cyrillic е
    # Nor under another case (one channel to an IRC client), skeletons as ever: I for l, m for rn.
    for name in ("#Team", "#TEAM", "#tearn", "#TEARN"):
        assert bob.ask(Join(name)) == [failure(Reason.LOOKS_LIKE, "#team")]
    assert bob.ask(Join("#Straße")) == [OK]
    assert alice.ask(Join("#STRASSE")) == [failure(Reason.LOOKS_LIKE, "#Straße")]
    assert alice.ask(Part("#team")) == [OK]  # (gone with its last member)
    assert bob.ask(Join("#Team")) == [OK]


def test_an_unregistered_member_leaves_at_logout_a_registered_one_stays(connect, rooms):
    alice, bob, carol = connect("alice", register=True), connect("bob"), connect("carol")
    for client in (alice, bob, carol):
        client.ask(Join("#r"))
    events(alice)
    assert bob.ask(Logout()) == [OK]
    assert carol.rules.log_out("disconnected")  # (as its session ends without a logout)
    # Each says how it went (an IRC client shows it as a QUIT), where a PART has no detail.
    assert events(alice) == [
        RoomEvent("#r", EventKind.PARTED, "bob", "logged out"),
        RoomEvent("#r", EventKind.PARTED, "carol", "disconnected"),
    ]
    assert alice.ask(Logout()) == [OK]
    assert set(rooms.get("#r").members) == {"alice"}


def test_a_guest_who_registers_its_name_stays_a_member_as_the_registered_do(connect, rooms, accounts):
    alice, dave = connect("alice", register=True), connect("dave")
    assert dave.ask(Join("#guests")) == [OK]  # (a room of no registered member: not kept yet)
    for client in (alice, dave):
        client.ask(Join("#r"))
    events(alice)
    assert dave.ask(Register("dave", "pw")) == [OK]
    assert dave.ask(Logout()) == [OK]
    assert events(alice) == []  # (not out of the room at its logout)
    assert rooms.get("#r").members == {"alice": True, "dave": True}
    assert alice.ask(GiveRoom("#r", "dave")) == [OK]  # (a registered member's, so it may own it)
    restarted = Rooms(accounts.store)
    restarted.start()
    assert restarted.get("#r").members == {"alice": True, "dave": True}
    assert restarted.get("#guests").members == {"dave": True}
    assert restarted.get("#guests").owner == "dave"  # (it had none: its first registered member's)


def test_a_guests_invitation_ends_with_it_and_one_that_registers_keeps_it(connect, rooms, accounts):
    from chatroom.protocol import Authenticate

    alice, carl, dan = connect("alice", register=True), connect("carl"), connect("dan")
    assert alice.ask(Join("#vip")) == [OK] and alice.ask(SetInviteOnly("#vip", True)) == [OK]
    assert alice.ask(Invite("#vip", "carl")) == [OK] and alice.ask(Invite("#vip", "dan")) == [OK]
    assert carl.ask(Logout()) == [OK]
    assert connect("carl").ask(Join("#vip")) == [failure(Reason.INVITE_ONLY)]  # (someone else now)
    assert dan.ask(Register("dan", "pw")) == [OK] and dan.ask(Logout()) == [OK]
    restarted = Rooms(accounts.store)
    restarted.start()
    assert restarted.get("#vip").invited == {"dan"}  # (kept, as a registered name's is)
    again = connect()
    assert again.ask(Authenticate("dan", "pw")) == [OK]
    assert again.ask(Join("#vip")) == [OK]


def test_a_room_without_an_owner_is_its_first_registered_members(connect, rooms):
    gus, ann = connect("gus"), connect("ann")
    for client in (gus, ann):
        assert client.ask(Join("#lobby")) == [OK]  # (a guest's: no owner)
    assert rooms.get("#lobby").owner is None
    assert ann.ask(SetTopic("#lobby", "mine")) == [failure(Reason.NOT_OWNER)]
    reg = connect("reg", register=True)
    events(gus)
    assert reg.ask(Join("#lobby")) == [OK]
    assert events(gus) == [
        RoomEvent("#lobby", EventKind.JOINED, "reg"),
        RoomEvent("#lobby", EventKind.OWNER, "reg", "reg"),
    ]
    assert reg.ask(SetTopic("#lobby", "ours")) == [OK]
    other = connect("other", register=True)
    assert other.ask(Join("#lobby")) == [OK] and rooms.get("#lobby").owner == "reg"  # (one owner)
    assert ann.ask(Register("ann", "pw")) == [OK] and rooms.get("#lobby").owner == "reg"


def test_a_registration_stands_when_its_rooms_cannot_be_told(connect, rooms, monkeypatch, caplog):
    from chatroom.server.presence.directory import DirectoryUnavailable

    dave = connect("dave")
    dave.ask(Join("#r"))

    def unavailable(user):
        raise DirectoryUnavailable("down")

    monkeypatch.setattr(rooms, "registered", unavailable)
    assert dave.ask(Register("dave", "pw")) == [OK]
    assert dave.rules.is_registered
    assert "registered dave: its rooms could not be told" in caplog.text


def test_the_owner_sets_the_topic_removes_makes_invite_only_invites_and_hands_on(connect, rooms):
    alice, bob, carol = connect("alice", register=True), connect("bob", register=True), connect("carol")
    for client in (alice, bob, carol):
        client.ask(Join("#r"))
    assert bob.ask(SetTopic("#r", "no")) == [failure(Reason.NOT_OWNER)]
    for broken in ("two\nlines", "a\rb", "a\0b", "x" * 1001):  # (one line of at most 1000 bytes)
        assert alice.ask(SetTopic("#r", broken)) == [failure(Reason.INVALID_TEXT)]
    assert alice.ask(SetTopic("#r", "plans")) == [OK]
    assert RoomEvent("#r", EventKind.TOPIC, "alice", "plans") in events(bob)
    assert alice.ask(Kick("#r", "carol")) == [OK]
    assert RoomEvent("#r", EventKind.REMOVED, "alice", "carol") in events(carol)
    assert alice.ask(SetInviteOnly("#r", True)) == [OK]
    assert carol.ask(Join("#r")) == [failure(Reason.INVITE_ONLY)]
    assert carol.ask(ListMembers("#r")) == [failure(Reason.NO_SUCH_ROOM)]  # not even seen
    events(carol)
    assert alice.ask(Invite("#r", "carol")) == [OK]
    assert RoomEvent("#r", EventKind.INVITED, "alice", "carol") in events(carol)
    assert carol.ask(Join("#r")) == [OK]
    assert alice.ask(GiveRoom("#r", "carol")) == [failure(Reason.NOT_A_MEMBER)]  # unregistered
    events(bob)
    assert alice.ask(GiveRoom("#r", "alice")) == [OK] and events(bob) == []  # (its own already)
    assert alice.ask(GiveRoom("#r", "bob")) == [OK]
    assert rooms.get("#r").owner == "bob"
    assert alice.ask(SetTopic("#r", "mine")) == [failure(Reason.NOT_OWNER)]
    # An owner who leaves hands the room on to the registered member there longest, and says so.
    events(carol)
    assert bob.ask(Part("#r")) == [OK]
    assert rooms.get("#r").owner == "alice"
    assert events(carol) == [RoomEvent("#r", EventKind.PARTED, "bob"), RoomEvent("#r", EventKind.OWNER, "bob", "alice")]


def test_the_limits_say_so(directory, accounts):
    rooms = Rooms(accounts.store, Quotas(rooms_per_user=2, members_per_room=2, rooms_per_server=3))
    make = lambda name: Client(directory, accounts, rooms=rooms)  # noqa: E731
    alice = make("alice")
    for client, name in ((alice, "alice"),):
        client.ask(Hello(3))
        client.ask(Login(name))
    assert alice.ask(Join("#a")) == [OK] and alice.ask(Join("#b")) == [OK]
    assert alice.ask(Join("#c")) == [failure(Reason.TOO_MANY_ROOMS, "2")]
    bob, carol = make("bob"), make("carol")
    for client, name in ((bob, "bob"), (carol, "carol")):
        client.ask(Hello(3))
        client.ask(Login(name))
    assert bob.ask(Join("#a")) == [OK]
    assert carol.ask(Join("#a")) == [failure(Reason.ROOM_FULL, "2")]
    assert carol.ask(Join("#c")) == [OK]
    assert carol.ask(Join("#d")) == [failure(Reason.TOO_MANY_ROOMS, "3")]


def test_a_slow_member_is_dropped_and_the_others_are_served(connect):
    fast, slow, sender = connect("fast"), connect("slow"), connect("sender")
    for client in (fast, slow, sender):
        client.ask(Join("#r"))
    slow.full = True
    assert sender.ask(SendTo("#r", "go")) == [OK]
    assert slow.disconnected and [m.text for m in events(fast, RoomMessage)] == ["go"]


def test_a_rooms_messages_follow_its_members_as_they_come_and_go(connect):
    """(A room keeps its members' sinks between messages: never a connection that has gone,
    always the one a member has now.)"""
    alice, bob = connect("alice", register=True), connect("bob")
    for client in (alice, bob):
        client.ask(Join("#r"))
    assert bob.ask(SendTo("#r", "one")) == [OK]
    assert alice.ask(Logout()) == [OK]  # (registered: still a member)
    assert bob.ask(SendTo("#r", "while away")) == [OK]
    again = connect()
    assert again.ask(Authenticate("alice", "secret")) == [OK]  # (only the directory changed)
    assert bob.ask(SendTo("#r", "two")) == [OK]
    carol = connect("carol")
    assert carol.ask(Join("#r")) == [OK]
    assert bob.ask(SendTo("#r", "three")) == [OK]
    assert [m.text for m in events(alice, RoomMessage)] == ["one"]
    assert [m.text for m in events(again, RoomMessage)] == ["two", "three"]
    assert [m.text for m in events(carol, RoomMessage)] == ["three"]
    assert carol.ask(Part("#r")) == [OK]
    assert bob.ask(SendTo("#r", "four")) == [OK]
    assert events(carol, RoomMessage) == [] and [m.text for m in events(again, RoomMessage)] == ["four"]


def test_room_history_is_for_members_and_pages_like_direct_history(connect, accounts):
    alice, bob = connect("alice"), connect("bob")
    alice.ask(Join("#r"))
    for n in range(30):
        alice.ask(SendTo("#r", f"m{n}"))
    accounts.store._worker.flush()
    assert bob.ask(HistoryRequest("#r", 10)) == [failure(Reason.NOT_A_MEMBER)]
    bob.ask(Join("#r"))
    [page] = bob.ask(HistoryRequest("#r", 10))
    assert isinstance(page, RoomHistory) and [e.text for e in page.entries] == [f"m{n}" for n in range(20, 30)]
    [older] = bob.ask(HistoryRequest("#r", 10, page.entries[0].id))
    assert [e.text for e in older.entries] == [f"m{n}" for n in range(10, 20)]


def test_room_messages_count_against_the_senders_daily_history_quota(connect, accounts):
    """Past the quota a room's message is relayed, not kept; a direct message shares it."""
    accounts._history_bytes = DailyBytes(500)
    alice, bob = connect("alice", register=True), connect("bob")
    alice.ask(Join("#r"))
    bob.ask(Join("#r"))
    texts = [f"{n} " + "y" * 98 for n in range(6)]  # 100 bytes each
    for text in texts[:4]:
        assert alice.ask(SendTo("#r", text)) == [OK]
    assert alice.ask(SendTo("bob", "d" * 100)) == [OK]  # the fifth hundred
    for text in texts[4:]:
        assert alice.ask(SendTo("#r", text)) == [OK]
    assert [m.text for m in events(bob, RoomMessage)] == texts
    [page] = bob.ask(HistoryRequest("#r", 10))
    assert [e.text for e in page.entries] == texts[:4]


def test_a_sender_ended_while_its_room_message_is_posted_still_has_it_kept(connect, accounts, rooms, monkeypatch):
    """In a cluster the post waits for Redis, and the sender's connection may end meanwhile."""
    alice = connect("alice", register=True)
    alice.ask(Join("#r"))
    post = rooms.post

    def posted_while_alice_ends(*args):
        alice.rules.log_out("ended")
        return post(*args)

    monkeypatch.setattr(rooms, "post", posted_while_alice_ends)
    assert alice.ask(SendTo("#r", "last words")) == [OK]
    assert [row[2:] for row in accounts.store.room_history("#r", 10, 0)] == [("alice", "last words")]


def test_a_restart_keeps_registered_memberships_ownership_invitations_and_history(directory, tmp_path):
    def server():
        accounts = Accounts(SQLiteStore(tmp_path / "db"), hasher=CHEAP)
        accounts.start()
        rooms = Rooms(accounts.store)
        rooms.start()
        return accounts, rooms

    accounts, rooms = server()
    bob = Client(directory, accounts, rooms=rooms)
    bob.ask(Hello(3))
    bob.ask(Register("bob", "secret"))  # (an invitation is kept for a registered name)
    bob.rules.log_out("gone")
    alice = Client(directory, accounts, rooms=rooms)
    alice.ask(Hello(3))
    alice.ask(Register("alice", "secret"))
    alice.ask(Join("#kept"))
    alice.ask(SetTopic("#kept", "still here"))
    alice.ask(SetInviteOnly("#kept", True))
    alice.ask(Invite("#kept", "bob"))
    alice.ask(SendTo("#kept", "remember me"))
    alice.rules.log_out("gone")
    accounts.stop()

    accounts, rooms = server()
    room = rooms.get("#kept")
    assert room is not None and room.owner == "alice" and room.topic == "still here" and room.invite_only
    assert set(room.members) == {"alice"} and room.invited == {"bob"}
    assert [row[3] for row in accounts.store.room_history("#kept", 10, 0)] == ["remember me"]
    assert rooms.next_id(room) == 2  # ids go on from the last one kept
    # A message after the restart is indexed for search beside the one before it, not over it.
    accounts.store.record_room("#kept", 2, "alice", "remember me too", now_ms())
    found = accounts.store.search("alice", "remember", None, ["#kept"], 10, 0)
    assert [text for *_, text in found] == ["remember me too", "remember me"]
    accounts.stop()


# --- Ids of direct messages (version 3) ---------------------------------------------------------


def test_a_version_3_client_gets_direct_messages_with_ids_the_history_keeps(connect, accounts):
    from chatroom.protocol import DirectMessage, HistoryPage, Incoming

    alice, bob = connect("alice", register=True), connect("bob", register=True)
    old = connect("old", version=2)
    for n in range(3):
        assert alice.ask(SendTo("bob", f"m{n}")) == [OK]
    got = events(bob, DirectMessage)
    assert [m.text for m in got] == ["m0", "m1", "m2"]
    assert [m.id for m in got] == sorted({m.id for m in got})  # increasing, and each its own
    assert alice.ask(SendTo("old", "hi")) == [OK]
    assert events(old) == [Incoming("alice", "hi")]  # a version 2 client sees no change
    accounts.store._worker.flush()
    [page] = bob.ask(HistoryRequest("alice", 10))
    assert isinstance(page, HistoryPage) and [e.id for e in page.entries] == [m.id for m in got]
    [older] = bob.ask(HistoryRequest("alice", 10, got[1].id))
    assert [e.text for e in older.entries] == ["m0"]


def test_messages_kept_while_away_come_with_their_history_ids_to_version_3(connect, accounts):
    from chatroom.protocol import Authenticate, HistoryPage, Logout, StoredMessage

    bob = connect("bob", register=True)
    assert bob.ask(Logout()) == [OK]
    alice = connect("alice")
    for n in range(2):
        assert alice.ask(SendTo("bob", f"kept {n}")) == [Response(Status.STORED)]
    back = connect()
    replies = back.ask(Authenticate("bob", "secret"))
    kept = [m for m in replies if isinstance(m, StoredMessage)]
    assert [m.text for m in kept] == ["kept 0", "kept 1"] and all(m.id for m in kept)
    accounts.store._worker.flush()
    [page] = back.ask(HistoryRequest("alice", 10))
    assert isinstance(page, HistoryPage) and [e.id for e in page.entries] == [m.id for m in kept]
    assert back.ask(Logout()) == [OK]
    assert alice.ask(SendTo("bob", "for an older client")) == [Response(Status.STORED)]
    older = connect(version=2)
    [_, message] = older.ask(Authenticate("bob", "secret"))
    assert message == StoredMessage("alice", message.time_ms, "for an older client")  # STORED-MESSAGE, no id


# --- Search (version 3) --------------------------------------------------------------------------


def test_search_finds_ones_own_messages_newest_first_and_never_anothers(connect, accounts):
    from chatroom.search_frames import Search, SearchResults

    alice, bob = connect("alice", register=True), connect("bob", register=True)
    carol = connect("carol", register=True)
    alice.ask(Join("#team"))
    bob.ask(Join("#team"))
    assert alice.ask(SendTo("bob", "the blue key is under the mat")) == [OK]
    assert bob.ask(SendTo("alice", "a red key, not blue")) == [OK]
    assert bob.ask(SendTo("carol", "carol: the blue key is mine")) == [OK]  # not alice's to find
    assert alice.ask(SendTo("#team", "blue keys for everyone")) == [OK]
    accounts.store._worker.flush()
    [found] = alice.ask(Search(10, 0, "", "blue key"))
    assert isinstance(found, SearchResults)
    assert [(f.conversation, f.sender, f.text) for f in found.found] == [
        ("bob", "bob", "a red key, not blue"),
        ("bob", "alice", "the blue key is under the mat"),
    ]
    [in_room] = alice.ask(Search(10, 0, "#team", "blue"))
    assert [f.text for f in in_room.found] == ["blue keys for everyone"]
    [older] = alice.ask(Search(10, found.found[0].time_ms, "bob", "blue"))
    assert all(f.time_ms < found.found[0].time_ms for f in older.found)
    assert carol.ask(Search(10, 0, "#team", "blue")) == [failure(Reason.NOT_A_MEMBER)]
    assert connect("dave").ask(Search(10, 0, "", "blue")) == [failure(Reason.NOT_REGISTERED)]
    assert alice.ask(Search(10, 0, "", "  ")) == [failure(Reason.INVALID_TEXT)]
    assert alice.ask(Search(0, 0, "", "blue")) == [failure(Reason.INVALID_COUNT)]
    [quoted] = alice.ask(Search(10, 0, "", 'blue" OR "red'))  # typed quotes are words, not syntax
    assert quoted.found == ()


def test_room_and_member_lists_give_as_many_as_fit_in_one_frame_ones_own_and_the_owner_first():
    from chatroom.fields import as_many_as_fit
    from chatroom.protocol import MAX_BODY
    from chatroom.server.rooms.room_rules import _member_size, _room_entry_size

    def body(message):
        return len(encode(message)) - 5

    long = chr(0x65E5) * 19  # (a name of 19 characters, 57 bytes, and one more)
    rooms = [RoomEntry("#" + long[:18] + chr(0x4E00 + n), RoomFlag(0), 3) for n in range(5_000)]
    rooms[4_321] = RoomEntry(rooms[4_321].name, RoomFlag.MEMBER, 3)
    fitting = as_many_as_fit(rooms, _room_entry_size, lambda entry: not entry.flags & RoomFlag.MEMBER, MAX_BODY)
    assert fitting[0] == rooms[4_321] and fitting[1:] == [r for r in rooms if not r.flags][: len(fitting) - 1]
    assert body(RoomList(tuple(fitting))) <= MAX_BODY < body(RoomList(tuple(fitting))) + 62
    few = rooms[:100]
    assert as_many_as_fit(few, _room_entry_size, lambda entry: True, MAX_BODY) == few  # (all, as they are)
    members = [(long + chr(0x4E00 + n), MemberFlag(0)) for n in range(5_000)]
    members[3_000] = (members[3_000][0], MemberFlag.OWNER)
    members[4_000] = (members[4_000][0], MemberFlag.ONLINE)
    room = MAX_BODY - body(MemberList("#t", "a topic", ()))
    fitting = as_many_as_fit(members, _member_size, lambda member: not member[1], room)
    others = [member for member in members if not member[1]]
    assert fitting[:2] == [members[3_000], members[4_000]] and fitting[2:] == others[: len(fitting) - 2]
    assert body(MemberList("#t", "a topic", tuple(fitting))) <= MAX_BODY
    assert Decoder.for_client().receive_data(encode(MemberList("#t", "a topic", tuple(fitting))))
