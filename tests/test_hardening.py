"""Hardening: connection caps, idle connections, draining on shutdown, graceful close after a
broken frame, look-alike names. Each test failed before its fix."""

import signal
import struct

import gevent
import pytest

from chatroom.codec import encode
from chatroom.protocol import MAX_BODY, Incoming, ListUsers, Login, Logout, SendTo, UserList
from chatroom.server.presence.skeleton import skeleton
from chatroom.testing import FAILURE, MALFORMED, OK, WAIT, Peer, assert_clean_log, eventually

# --- Who may connect, and for how long -----------------------------------------------------


def test_max_per_ip_refuses_the_extra_connections_of_one_address(server_process, peer_at):
    server = server_process("--max-per-ip", "3", "--limit-loopback")
    first = [peer_at(server.address) for _ in range(3)]
    for peer in first:
        assert peer.request(ListUsers()) == UserList(())
    extra = peer_at(server.address)
    extra.assert_closed()
    server.wait_for_log("1 per_ip")  # counted, and summed up in the log
    first[0].close()
    eventually(lambda: _serves(peer_at, server.address))


def _serves(peer_at, address) -> bool:
    try:
        return peer_at(address).request(ListUsers()) == UserList(())
    except (AssertionError, OSError):
        return False


def test_loopback_is_exempt_from_max_per_ip_by_default(server_process, peer_at):
    server = server_process("--max-per-ip", "3")
    peers = [peer_at(server.address) for _ in range(10)]
    for peer in peers:
        assert peer.request(ListUsers()) == UserList(())


def test_ipv4_loopback_through_a_dual_stack_listener_is_loopback(server_process, peer_at):
    """Listening on ::, an IPv4 client arrives as ::ffff:127.0.0.1: still loopback, exempt."""
    server = server_process("--host", "::", "--max-per-ip", "3")
    peers = [peer_at(server.address) for _ in range(6)]
    for peer in peers:
        assert peer.request(ListUsers()) == UserList(())


def test_ipv4_clients_through_a_dual_stack_listener_count_each_address(server_process, peer_at):
    """Counted as the IPv4 address each is, not one IPv4-mapped /64 for all of them."""
    server = server_process("--host", "::", "--max-per-ip", "2", "--limit-loopback")
    peers = [peer_at(server.address, source=source) for source in ("127.0.0.1", "127.0.0.2") * 2]
    for peer in peers:
        assert peer.request(ListUsers()) == UserList(())
    peer_at(server.address, source="127.0.0.2").assert_closed()
    server.wait_for_log("1 per_ip")


def test_silent_connections_are_closed_and_free_their_places(server_process, peer_at):
    server = server_process("--idle-timeout", "0.5", "--max-clients", "20")
    silent = [peer_at(server.address) for _ in range(20)]  # fill every place, say nothing
    talker = peer_at(server.address)
    talker.assert_closed()  # refused: the server is full
    for peer in silent:
        peer.assert_closed()
    server.wait_for_log("sent no frame in 0.5 s")  # (a turn of the server's loop writes its lines at its end)
    eventually(lambda: _serves(peer_at, server.address))


def test_a_connection_that_has_spoken_may_then_stay_quiet(server_process, peer_at):
    server = server_process("--idle-timeout", "0.3")
    peer = peer_at(server.address)
    peer.login("alice")
    gevent.sleep(1.0)  # not a wait for an event: more than the idle timeout, spent quiet
    assert peer.request(ListUsers()) == UserList(("alice",))


# --- Shutdown ------------------------------------------------------------------------------


def test_sigterm_delivers_every_acknowledged_message_to_a_slow_reader(server_process, peer_at):
    # More than the kernel's socket buffers hold: most of it waits in the server's outbox.
    count, text = 20_000, "m" * 480
    server = server_process("--sendq", str(64 << 20), "--send-timeout", "30", "--drain-timeout", "20")
    reader = peer_at(server.address)
    reader.login("reader")
    sender = peer_at(server.address)
    sender.login("sender")
    sender.send(*[SendTo("reader", f"{i} {text}") for i in range(count)])
    acknowledged = sum(sender.next_event() == OK for _ in range(count))
    assert acknowledged == count
    server.signal(signal.SIGTERM)
    received = 0
    with gevent.Timeout(30):
        while True:
            data = reader.sock.recv(1 << 20)
            if not data:
                break
            for event in reader.decoder.receive_data(data):
                assert event == Incoming("sender", f"{received} {text}")
                received += 1
    assert received == acknowledged
    assert server.wait(timeout=30) == 0
    assert_clean_log(server.log_text())


def test_sigterm_gives_up_on_a_reader_that_never_reads_after_the_drain_timeout(server_process, peer_at):
    server = server_process("--sendq", str(64 << 20), "--send-timeout", "30", "--drain-timeout", "0.5")
    reader = peer_at(server.address)
    reader.login("reader")
    sender = peer_at(server.address)
    sender.login("sender")
    sender.send(*[SendTo("reader", "x" * 1000) for _ in range(10_000)])
    assert all(sender.next_event() == OK for _ in range(10_000))
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=WAIT) == 0
    assert "did not take what they were sent in 0.5 s" in server.log_text()


# --- A frame too big to read -----------------------------------------------------------------


def test_replies_before_an_oversize_header_all_arrive_before_the_close(server):
    # Replies to many pipelined frames, more than the socket buffers of a client reading
    # slowly hold, are still on their way when the server meets the bad header and closes.
    frames = 20_000
    for _ in range(3):
        peer = Peer(server.address, receive_buffer=4096)
        try:
            burst = encode(ListUsers()) * frames + struct.pack("!BI", 0x01, MAX_BODY + 1) + b"j" * 200_000
            sender = gevent.spawn(peer.send_raw, burst)
            replies = [peer.next_event() for _ in range(frames + 1)]
            assert replies[-1] == MALFORMED and replies[:-1] == [UserList(())] * frames
            peer.assert_closed()
            sender.join(WAIT)
        finally:
            peer.close()


# --- Names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "bo\u00adb",  # soft hyphen
        "bob\u200b",  # zero width space
        "\ufeffbob",  # byte order mark
        "\u2066bob\u2069",  # bidi isolates
        "\u202ebob",  # right-to-left override
        "bob\U000e0041",  # tag character
        "\u3164",  # Hangul filler
        "bob\u2800",  # braille blank
        "bob\ue000",  # private use
        "bob\U000e01f0",  # unassigned
    ],
)
def test_names_with_invisible_characters_are_refused(connect, name):
    assert connect().request(Login(name)) == FAILURE


def test_a_name_that_looks_like_one_logged_in_is_refused_until_it_leaves(connect):
    bob = connect()
    assert bob.request(Login("bob")) == OK
    impostor = connect()
    assert impostor.request(Login("b\u043eb")) == FAILURE  # Cyrillic о
    assert impostor.request(Login("bob\ufe0f")) == FAILURE  # a variation selector
    assert impostor.request(Login("Bob")) == OK  # case is not confusion: two users
    assert bob.request(Logout()) == OK
    other = connect()
    assert other.request(Login("b\u043eb")) == OK
    assert bob.request(Login("bob")) == FAILURE


def test_skeletons_follow_unicode_confusables():
    assert skeleton("AIice") == skeleton("Alice")  # capital I and small l
    assert skeleton("paypal") == skeleton("p\u0430yp\u0430l")  # Cyrillic а
    assert skeleton("rn") == skeleton("m")
    assert skeleton("bob") != skeleton("Bob")
    assert skeleton("名前") == "名前"


def test_an_ascii_names_skeleton_is_the_general_one():
    # (ASCII names take a shorter way: it must agree with UTS #39's mapping, done here in full,
    # for every character, those the table maps to more than ASCII among them.)
    import random

    from chatroom.server.presence.skeleton import _skeleton_in_full as in_full

    printable = [chr(code) for code in range(0x21, 0x7F)]
    names = printable + ["".join(random.Random(seed).choices(printable, k=12)) for seed in range(2000)]
    for name in names:
        assert skeleton(name) == in_full(name), name
    assert skeleton("5%") == in_full("5%") != "5%"  # (% has a prototype beyond ASCII)


def test_a_burst_of_guesses_from_many_addresses_is_not_all_hashed_and_the_owner_gets_in(server_process, peer_at):
    from chatroom.protocol import Authenticate, Hello, Register

    server = server_process()
    owner = peer_at(server.address, source="127.0.0.2")
    assert owner.request(Hello(1)) == OK and owner.request(Register("bob", "the right one")) == OK
    owner.close()
    guessers = []
    for i in range(250):
        peer = peer_at(server.address, source=f"127.0.{1 + i // 200}.{3 + i % 200}")
        peer.send(Hello(1), Authenticate("bob", "guess"), Authenticate("bob", "guess again"))
        guessers.append(peer)
    with gevent.Timeout(WAIT * 2):
        replies = [peer.next_event() for peer in guessers for _ in range(3)]
    assert replies.count(OK) == 250 and replies.count(FAILURE) == 500  # (OK: their HELLOs)
    hashed = server.log_text().count("password for bob") - server.log_text().count(": busy")
    assert hashed <= 10, f"{hashed} guesses were hashed"
    again = peer_at(server.address, source="127.0.0.2")  # bob, from where he registered
    assert again.request(Hello(1)) == OK and again.request(Authenticate("bob", "the right one")) == OK


def test_ids_and_times_past_what_the_store_holds_are_answered_not_crashed(server_process):
    """A u64 of 2**63 or more (SQLite keeps signed 64-bit integers) in MARK, HISTORY and
    SEARCH names nothing more than the greatest id: answered as such, the log clean."""
    from chatroom.device_frames import Mark, Unread, UnreadCounts
    from chatroom.fields import MOST_ID
    from chatroom.protocol import HistoryPage, HistoryRequest
    from chatroom.search_frames import Search, SearchResults
    from chatroom.testing import hello_peer

    server = server_process()
    ann = hello_peer(server.address, 4, "ann", "pw")
    try:
        huge = (1 << 64) - 1
        assert ann.reply(Mark("bob", huge)) == OK
        assert isinstance(ann.reply(HistoryRequest("bob", 5, huge)), HistoryPage)
        assert isinstance(ann.reply(Search(5, huge, "", "anything")), SearchResults)
        counts = ann.reply(Unread())  # (the marker, written behind, made it to the disk)
        assert isinstance(counts, UnreadCounts) and [(e.conversation, e.marker) for e in counts.entries] == [
            ("bob", MOST_ID)
        ]
    finally:
        ann.close()
    assert_clean_log(server.log_text())
