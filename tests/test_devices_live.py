"""One account on several devices over real sockets: a stalled device, unread counts across a
restart (with the terminal's "while you were away"), and a device on each node of a cluster."""

import re

import gevent
import pytest

from chatroom.device_frames import Mark, Marked, OwnMessage, Unread, UnreadCounts, UnreadEntry
from chatroom.protocol import Authenticate, DirectMessage, Hello, ListUsers, Register, SendTo, UserList
from chatroom.testing import OK, WAIT, Peer
from tests.terminals import register

pytestmark = pytest.mark.process


def device(address, name, password="pw", receive_buffer=None) -> Peer:
    """A connection of version 4 logged in to name (registering it if it is new)."""
    peer = Peer(address, receive_buffer=receive_buffer)
    assert peer.reply(Hello(4)) == OK
    if peer.reply(Authenticate(name, password)) != OK:
        assert peer.reply(Register(name, password)) == OK
    return peer


def direct_messages(peer, count) -> list:
    return peer.pushes_of(DirectMessage, count)


def test_a_stalled_device_is_dropped_and_the_accounts_other_sessions_carry_on(server_process):
    server = server_process("--sendq", "65536", "--send-timeout", "1")
    stalled = device(server.address, "alice", receive_buffer=4096)  # never reads
    reading = device(server.address, "alice")
    bob = device(server.address, "bob")
    text = "x" * 60_000
    sent = 0
    with gevent.Timeout(WAIT * 3):
        while True:
            assert bob.reply(SendTo("alice", f"{sent:05d}{text}")) == OK
            sent += 1
            assert [m.text[:5] for m in direct_messages(reading, 1)] == [f"{sent - 1:05d}"]
            if "is not reading" in server.log_text():
                break
    stalled.assert_closed()
    assert re.search(r"alice \(\S+\) is not reading; disconnecting, \d+ relayed .* 0 of them kept", server.log_text())
    assert bob.reply(SendTo("alice", "after")) == OK
    assert [m.text for m in direct_messages(reading, 1)] == ["after"]
    assert bob.reply(ListUsers()) == UserList(("alice", "bob"))
    for peer in (stalled, reading, bob):
        peer.close()


def test_unread_counts_survive_a_restart_and_the_terminal_says_them(server_process, terminal, tmp_path):
    server = server_process(data_dir=tmp_path)
    alice, bob = device(server.address, "alice"), device(server.address, "bob")
    for i in range(3):
        assert bob.reply(SendTo("alice", f"b{i}")) == OK
    first, *_ = direct_messages(alice, 3)
    assert alice.reply(Mark("bob", first.id)) == OK
    alice.close()
    bob.close()
    server.terminate()
    again = server_process(data_dir=tmp_path)
    alice = device(again.address, "alice")
    assert alice.reply(Unread()) == UnreadCounts((UnreadEntry("bob", first.id, 2),))
    alice.close()
    term = terminal(again.address)
    term.type("login alice\r")
    term.wait_for_input_line("password for alice: ")
    term.type("pw\r")
    term.wait_for_line("while you were away: bob 2")
    term.type("history bob unread\r")  # from the marker on: b0 was read
    term.wait_for_text("── history with bob: the last 2 messages ──")
    term.wait_for_match(r"\d\d:\d\d bob: b2")
    assert not any(line.endswith("bob: b0") for line in term.lines())


def test_the_terminal_and_a_second_device_one_account(server_process, terminal):
    """What the terminal sends shows on the account's other session, marked as its own."""
    server = server_process()
    bob = device(server.address, "bob")
    term = terminal(server.address)
    register(term, "alice", "pw")
    phone = device(server.address, "alice")
    term.type("sendto bob from the terminal\r")
    [received] = direct_messages(bob, 1)
    with gevent.Timeout(WAIT):
        shown = phone.next_push()
    assert shown == OwnMessage("bob", received.id, received.time_ms, "from the terminal")
    assert bob.reply(SendTo("alice", "to both")) == OK
    term.wait_for_text("to both")
    [to_both] = direct_messages(phone, 1)
    with gevent.Timeout(WAIT):  # the terminal showed it: read, and the phone hears so
        assert phone.next_push() == Marked("bob", to_both.id)
    phone.close()
    bob.close()


def test_markers_are_answered_without_waiting_for_the_disk_and_kept(server_process, tmp_path):
    """A client sets a marker for every message it shows: they are answered from memory and
    written behind, in the writer's batches, so a flood of them waits for no disk."""
    import sqlite3

    from chatroom.protocol import Response, Status

    server = server_process(data_dir=tmp_path)
    alice = device(server.address, "alice")
    assert alice.reply(Mark("bob", 1)) == OK
    lock = sqlite3.connect(tmp_path / "chatroom" / "chatroom.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock: nothing can commit
    alice.send(*[Mark("bob", n) for n in range(2, 502)])
    with gevent.Timeout(WAIT):
        assert [alice.next_event() for _ in range(500)] == [Response(Status.OK)] * 500
    lock.execute("ROLLBACK")
    lock.close()
    alice.close()
    server.terminate()
    again = server_process(data_dir=tmp_path)
    alice = device(again.address, "alice")
    assert alice.reply(Unread()) == UnreadCounts((UnreadEntry("bob", 501, 0),))
    alice.close()


def test_a_session_ended_from_another_is_told_loses_its_tokens_and_stays_out(irc_server, terminal):
    """END-SESSION: the ended session gets what was queued for it, then SESSION-ENDED (IRC: an
    ERROR), and cannot resume with its token; the terminal says so and does not log in again
    when it reconnects, as it does after a lost connection."""
    from chatroom.device_frames import EndSession, SessionEnded, Sessions
    from chatroom.protocol import Reason, Resume, TokenRequest
    from chatroom.testing import IrcPeer, failure
    from chatroom.testing.waiting import eventually

    term = terminal(irc_server.address)
    register(term, "alice", "pw")
    laptop, phone = device(irc_server.address, "alice"), device(irc_server.address, "alice")
    token = laptop.reply(TokenRequest()).token
    irc = IrcPeer(irc_server.irc_address)
    irc.register("alice", "pw")

    def number_of(transport, address=None) -> int:
        [number] = [
            entry.number
            for entry in phone.reply(Sessions()).sessions
            if entry.transport == transport and not entry.flags and address in (None, entry.address)
        ]
        return number

    laptop_at = ":".join(map(str, laptop.sock.getsockname()))
    laptop.send(ListUsers())  # (its answer, queued before the end, comes first)
    assert phone.reply(EndSession(number_of("tcp", laptop_at))) == OK
    with gevent.Timeout(WAIT):
        assert laptop.next_event() == UserList(("alice",))
        assert laptop.next_event() == SessionEnded()
    laptop.assert_closed()
    laptop.close()
    again = Peer(irc_server.address)
    assert again.reply(Hello(4)) == OK
    assert again.reply(Resume("alice", token)) == failure(Reason.INVALID_TOKEN)
    again.close()

    assert phone.reply(EndSession(number_of("irc"))) == OK
    with gevent.Timeout(WAIT):
        while not (line := irc.line()).startswith("ERROR "):
            pass
    assert line == "ERROR :Closing link: Session ended from another device"
    irc.close()

    assert phone.reply(EndSession(number_of("tcp"))) == OK  # (the terminal's, the one left)
    term.wait_for_text("this session was ended from one of your devices")
    term.wait_for_text("reconnected after")
    term.wait_for_input_line("> ")  # (logged in as nobody: not "alice> ")
    eventually(lambda: len(phone.reply(Sessions()).sessions) == 1, what="the phone's session alone")
    phone.close()
