"""The server's rules, over real TCP sockets on 127.0.0.1, with clients as greenlets."""

import socket
import struct
import time

import gevent
import pytest

from chatroom.codec import encode
from chatroom.protocol import MAX_BODY, Incoming, ListUsers, Login, Logout, SendTo, UserList
from chatroom.testing import FAILURE, FAILURE_BYTES, MALFORMED, MALFORMED_BYTES, OK, OK_BYTES, eventually

# --- LOGIN ------------------------------------------------------------------------------


def test_login_answers_ok_in_exact_bytes(connect):
    peer = connect()
    peer.send(Login("alice"))
    assert peer.recv_exact(6) == OK_BYTES


@pytest.mark.parametrize("name", ["", "x" * 21, "a b", "tab\t", "nl\n", "del\x7f", "c1\x85", "nbsp\u00a0"])
def test_login_with_an_invalid_name_fails(connect, name):
    peer = connect()
    peer.send(Login(name))
    assert peer.recv_exact(6) == FAILURE_BYTES


@pytest.mark.parametrize("name", ["x" * 20, "😀" * 20, "Zoë"])
def test_login_accepts_names_up_to_twenty_code_points(connect, name):
    assert connect().request(Login(name)) == OK


def test_a_name_in_use_is_refused(server, connect, logged_in):
    logged_in(server.address, "alice")
    assert connect().request(Login("alice")) == FAILURE


def test_names_are_case_sensitive(server, connect, logged_in):
    logged_in(server.address, "bob")
    assert connect().request(Login("Bob")) == OK


def test_second_login_on_one_connection_fails(server, connect, logged_in):
    peer = logged_in(server.address, "alice")
    assert peer.request(Login("alice2")) == FAILURE
    assert peer.request(ListUsers()) == UserList(("alice",))


# --- LIST -------------------------------------------------------------------------------


def test_list_works_before_login_and_empty_is_an_empty_body(connect):
    peer = connect()
    peer.send(ListUsers())
    assert peer.recv_exact(5) == b"\x81\x00\x00\x00\x00"


def test_list_is_sorted_by_code_point(server, connect, logged_in):
    for name in ["bob", "Zed", "alice", "émile", "Ålf"]:
        logged_in(server.address, name)
    peer = connect()
    peer.send(ListUsers())
    body = b"\x03Zed\x05alice\x03bob\x04\xc3\x85lf\x06\xc3\xa9mile"
    assert peer.recv_exact(5 + len(body)) == struct.pack("!BI", 0x81, len(body)) + body


# --- SENDTO -----------------------------------------------------------------------------


def test_sendto_relays_with_the_sender_name_as_the_server_knows_it(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    bob = logged_in(server.address, "bob")
    alice.send(SendTo("bob", "hi bob"))
    assert alice.recv_exact(6) == OK_BYTES
    assert bob.recv_exact(5 + 1 + 5 + 6) == b"\x83\x00\x00\x00\x0c\x05alicehi bob"


def test_sendto_when_not_logged_in_fails(server, connect, logged_in):
    logged_in(server.address, "bob")
    assert connect().request(SendTo("bob", "hi")) == FAILURE


@pytest.mark.parametrize("recipient", ["nobody", "", "a b", "x" * 21])
def test_sendto_an_absent_or_invalid_user_fails(server, connect, recipient, logged_in):
    assert logged_in(server.address, "alice").request(SendTo(recipient, "hi")) == FAILURE


def test_sendto_with_empty_or_too_long_text_fails(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    bob = logged_in(server.address, "bob")
    assert alice.request(SendTo("bob", "")) == FAILURE
    assert alice.request(SendTo("bob", "x" * 65536)) == FAILURE
    assert alice.request(SendTo("bob", "ok")) == OK
    assert bob.next_event() == Incoming("alice", "ok")


def test_longest_text_arrives_intact(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    bob = logged_in(server.address, "bob")
    text = "€" * 65535  # 196,605 bytes of UTF-8
    assert alice.request(SendTo("bob", text)) == OK
    assert bob.next_event() == Incoming("alice", text)


def test_sendto_oneself_is_allowed(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    alice.send(SendTo("alice", "note to self"))
    events = [alice.next_event(), alice.next_event()]
    assert sorted(map(repr, events)) == sorted(map(repr, [OK, Incoming("alice", "note to self")]))


def test_messages_from_one_sender_arrive_in_order(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    bob = logged_in(server.address, "bob")
    alice.send(*[SendTo("bob", f"m{i}") for i in range(500)])
    assert [alice.next_event() for _ in range(500)] == [OK] * 500
    assert [bob.next_event().text for _ in range(500)] == [f"m{i}" for i in range(500)]


# --- LOGOUT and disconnects -------------------------------------------------------------


def test_logout_frees_the_name_and_keeps_the_connection(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    assert alice.request(Logout()) == OK
    assert alice.request(Logout()) == FAILURE
    assert alice.request(ListUsers()) == UserList(())
    assert alice.request(SendTo("alice", "hi")) == FAILURE
    logged_in(server.address, "alice")
    assert alice.request(Login("alice2")) == OK


def test_logout_when_not_logged_in_fails(connect):
    peer = connect()
    peer.send(Logout())
    assert peer.recv_exact(6) == FAILURE_BYTES


def test_clean_disconnect_is_a_logout(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    watcher = connect()
    alice.close()
    eventually(lambda: watcher.request(ListUsers()) == UserList(()))
    assert watcher.request(Login("alice")) == OK


def test_reset_disconnect_is_a_logout(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    alice.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    alice.close()  # RST instead of FIN
    watcher = connect()
    eventually(lambda: watcher.request(Login("alice")) == OK)


def test_disconnect_mid_frame_is_a_logout(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    alice.send_raw(encode(SendTo("bob", "half a frame"))[:9])
    alice.close()
    watcher = connect()
    eventually(lambda: watcher.request(Login("alice")) == OK)


def test_replies_still_reach_a_client_that_half_closed(connect):
    peer = connect()
    peer.send(Login("alice"), ListUsers())
    peer.sock.shutdown(socket.SHUT_WR)
    assert peer.next_event() == OK
    assert peer.next_event() == UserList(("alice",))
    peer.assert_closed()


# --- MALFORMED --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"\x07\x00\x00\x00\x00",
        b"\x80\x00\x00\x00\x03abc",
        b"\x02\x00\x00\x00\x01x",
        b"\x04\x00\x00\x00\x01x",
        b"\x03\x00\x00\x00\x00",
        b"\x03\x00\x00\x00\x02\x09a",
        b"\x01\x00\x00\x00\x01\xff",
        b"\x03\x00\x00\x00\x04\x03b\xffb",
        b"\x03\x00\x00\x00\x04\x01b\xc3(",
    ],
)
def test_malformed_frames_get_malformed_and_the_connection_stays(server, connect, wire, logged_in):
    logged_in(server.address, "b")
    peer = connect()
    peer.send_raw(wire)
    assert peer.recv_exact(6) == MALFORMED_BYTES
    assert peer.request(Login("alice")) == OK
    peer.send_raw(wire)
    assert peer.recv_exact(6) == MALFORMED_BYTES
    assert peer.request(ListUsers()) == UserList(("alice", "b"))


def test_every_type_byte_gets_exactly_one_reply(connect):
    peer = connect()
    peer.send_raw(b"".join(struct.pack("!BI", t, 0) for t in range(256)) + encode(ListUsers()))
    replies = [peer.next_event() for _ in range(257)]
    assert replies[0x01] == FAILURE  # LOGIN with an empty name
    assert replies[0x02] == UserList(())
    assert replies[0x03] == MALFORMED  # SENDTO with an empty body
    assert replies[0x04] == FAILURE  # LOGOUT when not logged in
    assert all(r == MALFORMED for t, r in enumerate(replies[:256]) if t not in (1, 2, 3, 4))
    assert replies[256] == UserList(())


def test_oversize_length_gets_malformed_at_once_then_close(connect):
    peer = connect()
    peer.send_raw(struct.pack("!BI", 0x03, MAX_BODY + 1))  # no body follows
    assert peer.recv_exact(6) == MALFORMED_BYTES
    peer.assert_closed()


def test_oversize_length_after_good_frames_answers_them_first(connect):
    peer = connect()
    peer.send_raw(encode(ListUsers()) + struct.pack("!BI", 0x01, 0xFFFFFFFF) + b"garbage")
    assert peer.next_event() == UserList(())
    assert peer.next_event() == MALFORMED
    peer.assert_closed()


def test_largest_legal_length_is_read_not_refused(server, connect, logged_in):
    alice = logged_in(server.address, "alice")
    body = b"\x01b" + b"x" * (MAX_BODY - 2)
    alice.send_raw(struct.pack("!BI", 0x03, MAX_BODY) + body)
    assert alice.next_event() == FAILURE  # well framed, but 262,219 characters of text is too long


# --- Ordering and concurrency -----------------------------------------------------------


def test_each_frame_gets_one_reply_in_order(server, connect, logged_in):
    logged_in(server.address, "bob")
    peer = connect()
    requests = [
        SendTo("bob", "too early"),
        Login("alice"),
        Login("alice"),
        ListUsers(),
        SendTo("nobody", "x"),
        SendTo("bob", "hi"),
        Logout(),
        Logout(),
    ]
    peer.send(*requests)
    expected = [FAILURE, OK, FAILURE, UserList(("alice", "bob")), FAILURE, OK, OK, FAILURE]
    assert [peer.next_event() for _ in requests] == expected


def test_fifty_concurrent_senders_to_one_receiver(server, connect, logged_in):
    receiver = logged_in(server.address, "sink")
    senders = [logged_in(server.address, f"s{i}") for i in range(50)]
    per_sender = 100
    text = "payload " * 8

    def blast(i, peer):
        for seq in range(per_sender):
            peer.send(SendTo("sink", f"{seq} {text}"))
        return [peer.next_event() for _ in range(per_sender)]

    workers = [gevent.spawn(blast, i, peer) for i, peer in enumerate(senders)]
    received = {f"s{i}": [] for i in range(50)}
    for _ in range(50 * per_sender):
        event = receiver.next_event()
        assert isinstance(event, Incoming) and event.text.endswith(text), event
        received[event.sender].append(int(event.text.split()[0]))
    gevent.joinall(workers, timeout=10, raise_error=True)
    assert all(w.value == [OK] * per_sender for w in workers)
    assert all(seqs == list(range(per_sender)) for seqs in received.values())
    assert receiver.decoder.pending == 0


def test_two_hundred_round_trips_take_well_under_a_second(server, connect, logged_in):
    # A ping-pong between two users: every hop is a small frame written after another small
    # frame, where Nagle's algorithm meeting delayed ACKs costs about 40 ms each.
    alice = logged_in(server.address, "alice")
    bob = logged_in(server.address, "bob")
    started = time.monotonic()
    for _ in range(200):
        alice.send(SendTo("bob", "ping"))
        assert bob.next_event() == Incoming("alice", "ping")
        bob.send(SendTo("alice", "pong"))
        assert bob.next_event() == OK
        assert {repr(alice.next_event()), repr(alice.next_event())} == {repr(OK), repr(Incoming("bob", "pong"))}
    assert time.monotonic() - started < 1.0


def test_an_ended_connection_is_freed_at_once_not_by_the_collector(server, logged_in):
    """Nothing in a connection that has ended refers back to its session: it and all it held
    go as soon as the server lets go of them, without waiting for the garbage collector's
    next full round (a burst of logins and logouts held them for seconds)."""
    import gc

    from chatroom.server.connection.session import Session

    gc.collect()
    gc.disable()
    try:
        alice = logged_in(server.address, "alice")
        alice.close()
        eventually(lambda: server.users_logged_in() == 0 and not server.connections_by_transport()["tcp"])
        eventually(lambda: not [thing for thing in gc.get_objects() if type(thing) is Session])
    finally:
        gc.enable()
