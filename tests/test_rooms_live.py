"""Rooms over real sockets: a server process and raw peers, pipe and terminal clients; one
order under concurrent senders, a slow member, a room of 1000, a restart."""

import signal
import time

import gevent
import pytest
from gevent import socket
from gevent.pool import Pool

from chatroom.protocol import Authenticate, Hello, HistoryRequest, Login, Logout, SendTo
from chatroom.room_frames import Join, ListMembers, MemberFlag, MemberList, RoomHistory, RoomMessage
from chatroom.testing import OK, WAIT, Peer, failure, hello_peer
from tests.terminals import log_in

pytestmark = pytest.mark.process


def member(address, name, room="#r", register=False) -> Peer:
    peer = hello_peer(address, 3, name, "pw" if register else None)
    peer.name = name
    assert peer.reply(Join(room)) == OK
    return peer


def room_messages(peer, count) -> list:
    return peer.pushes_of(RoomMessage, count)


def test_concurrent_senders_and_every_member_sees_one_order(server_process):
    server = server_process()
    peers = [member(server.address, f"m{n}") for n in range(8)]
    per_sender = 200

    def send(peer):
        for i in range(per_sender):
            peer.send(SendTo("#r", f"{peer.name} {i}"))

    senders = [gevent.spawn(send, peer) for peer in peers[:4]]
    gevent.joinall(senders, timeout=WAIT, raise_error=True)
    orders = []
    for peer in peers:
        messages = room_messages(peer, 4 * per_sender)
        ids = [m.id for m in messages]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        orders.append([(m.id, m.text) for m in messages])
    assert all(order == orders[0] for order in orders)
    for peer in peers:
        peer.close()


def test_a_slow_member_is_dropped_and_the_others_keep_a_low_latency(server_process):
    server = server_process("--sendq", "65536")
    sender, reader = member(server.address, "sender"), member(server.address, "reader")
    slow = member(server.address, "slow")
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
    count, text = 2000, "x" * 4000  # 8 MB: far more than its queue and the socket buffers hold
    reading = gevent.spawn(room_messages, reader, count)
    worst = 0.0
    for _ in range(count):
        started = time.monotonic()
        assert sender.reply(SendTo("#r", text)) == OK
        worst = max(worst, time.monotonic() - started)
        sender.pushed.clear()  # (its own messages, read as they come)
    assert worst < 1.0  # never made to wait on the slow member (that would be --send-timeout, 5 s)
    assert len(reading.get(timeout=WAIT)) == count
    server.wait_for_log("is not reading; disconnecting")
    assert "slow (" in server.log_text().split("is not reading")[0].rsplit("\n", 1)[-1]
    for peer in (sender, reader, slow):
        peer.close()


def test_a_room_of_1000_members_delivers_to_all_of_them(server_process):
    server = server_process("--max-per-ip", "2000")
    peers = Pool(50).map(lambda n: member(server.address, f"u{n:04d}", "#big"), range(1000))
    assert peers[0].reply(SendTo("#big", "to everyone")) == OK
    for peer in peers:
        assert [m.text for m in room_messages(peer, 1)] == ["to everyone"]
    for peer in peers:
        peer.close()


def test_a_restart_keeps_registered_memberships_ownership_and_history(server_process, tmp_path):
    first = server_process(data_dir=tmp_path)
    alice = member(first.address, "alice", "#kept", register=True)
    assert alice.reply(SendTo("#kept", "before the restart")) == OK
    alice.close()
    first.signal(signal.SIGTERM)
    assert first.wait(WAIT) == 0
    second = server_process(data_dir=tmp_path)
    again = Peer(second.address)
    assert again.reply(Hello(3)) == OK

    assert again.reply(Authenticate("alice", "pw")) == OK
    assert again.reply(ListMembers("#kept")) == MemberList(
        "#kept", "", (("alice", MemberFlag.ONLINE | MemberFlag.OWNER),)
    )
    page = again.reply(HistoryRequest("#kept", 10))
    assert isinstance(page, RoomHistory) and [e.text for e in page.entries] == ["before the restart"]
    assert again.reply(SendTo("#kept", "after")) == OK
    assert [m.id for m in room_messages(again, 1)] == [2]
    again.close()


def test_pipe_mode_prints_room_messages_rooms_and_members(server_process, client):
    server = server_process()
    alice = client(server.address)
    assert alice.run("login alice", "join #team") == ["Success", "Success"]
    bob = member(server.address, "bob", "#team")
    assert bob.reply(SendTo("#team", "hello team")) == OK
    assert alice.read_line() == "#team bob: hello team"
    assert alice.run("sendto #team hi bob") == ["Success"]  # one's own: not printed again
    assert alice.run("rooms") == ["#team"]
    alice.send("members #team")
    assert alice.read_lines(2) == ["alice", "bob"]
    alice.send("history #team")
    lines = alice.read_lines(2)
    assert [line.split(" ", 2)[2] for line in lines] == ["#team bob: hello team", "#team alice: hi bob"]
    assert alice.run("sendto #nowhere hi", "join #", "part #team") == ["Failure", "Bad username", "Success"]
    bob.close()


def test_the_terminal_joins_talks_in_a_room_and_completes_its_name(terminal, server, peer_at):
    term = terminal()
    log_in(term, "alice")
    term.type("join #team\r")
    term.wait_for_line("#team: alice joined")
    bob = peer_at(server.address)
    assert bob.reply(Hello(3)) == OK and bob.reply(Login("bob")) == OK and bob.reply(Join("#team")) == OK
    term.wait_for_line("#team: bob joined")
    term.type("join #Team\r")  # (the room under another case: none of its own)
    term.wait_for_line("Failure (looks like the room #team, which is there already)")
    term.type("talk #te\t")
    term.wait_for_input_line("alice> talk #team ")
    term.type("\r")
    term.wait_for_input_line("alice → #team> ")
    term.type("hello room\r")
    term.wait_for_match(r"\d\d:\d\d #team alice: hello room")
    assert [m.text for m in room_messages(bob, 1)] == ["hello room"]
    assert bob.reply(SendTo("#team", "hi alice")) == OK
    term.wait_for_match(r"\d\d:\d\d #team bob: hi alice")
    term.type("/members #team\r")
    term.wait_for_line("● bob")
    assert bob.reply(Logout()) == OK  # (a guest: out of the room, and how it went said)
    term.wait_for_line("#team: bob left (logged out)")


def test_the_rules_over_a_socket_hostile_names_limits_invitations_and_handing_on(server_process):
    from chatroom.protocol import Reason
    from chatroom.room_frames import GiveRoom, Invite, ListRooms, Part, RoomEntry, RoomFlag, RoomList, SetInviteOnly

    server = server_process("--rooms-per-user", "2", "--members-per-room", "2")

    owner = hello_peer(server.address, 3, "owner", "pw")
    for hostile in ("#", "#" + "x" * 21, "#a\u200bb", "#a b"):
        assert owner.reply(Join(hostile)) == failure(Reason.INVALID_ROOM)
    assert owner.reply(Join("#one")) == OK and owner.reply(Join("#two")) == OK
    assert owner.reply(Join("#three")) == failure(Reason.TOO_MANY_ROOMS, "2")
    heir = hello_peer(server.address, 3, "heir", "pw")
    assert heir.reply(Join("#\u043ene")) == failure(Reason.LOOKS_LIKE, "#one")  # Cyrillic о
    assert owner.reply(SetInviteOnly("#one", True)) == OK
    assert heir.reply(ListRooms()) == RoomList((RoomEntry("#two", RoomFlag(0), 1),))  # #one is not seen
    assert heir.reply(Join("#one")) == failure(Reason.INVITE_ONLY)
    assert owner.reply(Invite("#one", "heir")) == OK
    assert heir.reply(Join("#one")) == OK
    third = member(server.address, "third", "#two")
    assert third.reply(Join("#one")) == failure(Reason.INVITE_ONLY)
    assert owner.reply(Invite("#one", "third")) == OK
    assert third.reply(Join("#one")) == failure(Reason.ROOM_FULL, "2")
    # Invitations, as many as the members a room may have (third's and one more; again is no more).
    assert owner.reply(Invite("#one", "made-up")) == OK and owner.reply(Invite("#one", "third")) == OK
    assert owner.reply(Invite("#one", "another")) == failure(Reason.ROOM_FULL, "2")
    assert owner.reply(GiveRoom("#one", "third")) == failure(Reason.NOT_A_MEMBER)
    assert owner.reply(GiveRoom("#one", "heir")) == OK
    assert owner.reply(SetInviteOnly("#one", False)) == failure(Reason.NOT_OWNER)
    assert heir.reply(SetInviteOnly("#one", False)) == OK
    assert owner.reply(Part("#one")) == OK
    assert heir.reply(ListRooms()) == RoomList(
        (RoomEntry("#one", RoomFlag.MEMBER | RoomFlag.OWNER, 1), RoomEntry("#two", RoomFlag(0), 2))
    )
    for peer in (owner, heir, third):
        peer.close()


def test_search_from_the_pipe_client(server_process, client):
    server = server_process()
    bob = hello_peer(server.address, 3, "bob", "pw")
    alice = client(server.address, env={"CHATROOM_PASSWORD": "pw"})
    assert alice.run("register alice", "join #team") == ["Success", "Success"]
    assert bob.reply(Join("#team")) == OK
    assert bob.reply(SendTo("alice", "where is the blue key?")) == OK
    assert alice.read_line() == "bob: where is the blue key?"
    assert alice.run("sendto #team the blue key is found") == ["Success"]
    alice.send("search blue key")
    lines = alice.read_lines(2)  # (newest first; these two may share a millisecond)
    assert sorted(line.split(" ", 2)[2] for line in lines) == [
        "#team alice: the blue key is found",
        "bob bob: where is the blue key?",
    ]
    alice.send("search blue in bob")
    assert alice.read_line().split(" ", 2)[2] == "bob bob: where is the blue key?"
    assert alice.run("search") == ["Invalid command"]
    bob.close()


def test_a_room_senders_history_quota_holds_on_the_compiled_path_too(server_process):
    """Counted in the C; an unregistered sender's by its address (loopback counted here), so
    that a new name after a logout brings no new quota."""
    server = server_process("--history-mb-per-day", "0.0005", "--limit-loopback")  # 500 bytes
    alice = hello_peer(server.address, 3, "alice", "pw")
    bob = member(server.address, "bob", "#r")
    assert alice.reply(Join("#r")) == OK
    texts = [f"{n} " + "y" * 98 for n in range(8)]  # 100 bytes each
    for text in texts:
        assert alice.reply(SendTo("#r", text)) == OK
    page = bob.reply(HistoryRequest("#r", 20, 0))
    assert [entry.text for entry in page.entries] == texts[:5]
    for name in ("m1", "m2"):
        sender = member(server.address, name, "#r")
        for text in texts[:3]:
            assert sender.reply(SendTo("#r", f"{name} {text}")) == OK
        sender.close()
    page = bob.reply(HistoryRequest("#r", 20, 0))
    kept = [entry.text for entry in page.entries[5:]]  # 103 bytes each: four fit in 500
    assert kept == [f"m1 {text}" for text in texts[:3]] + [f"m2 {texts[0]}"]
    for peer in (alice, bob):
        peer.close()


def test_a_history_quota_past_what_the_compiled_path_counts_is_counted_by_the_python(server_process):
    server = server_process("--history-mb-per-day", "1e13")  # (10^19 bytes: past a C long long)
    alice = hello_peer(server.address, 3, "alice", "pw")
    assert alice.reply(Join("#r")) == OK
    for number in range(3):
        assert alice.reply(SendTo("#r", f"m{number}")) == OK
    assert [entry.text for entry in alice.reply(HistoryRequest("#r", 10, 0)).entries] == ["m0", "m1", "m2"]
    alice.close()
