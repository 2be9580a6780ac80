"""Registered names, offline messages and history, against a real server process and its real
SQLite file; and the seed protocol, unchanged, for clients that never say HELLO."""

import os
import re
import signal
import sqlite3
import sys
import time

import gevent
import pytest
from gevent import subprocess

from chatroom.codec import encode
from chatroom.protocol import (
    Authenticate,
    ChangePassword,
    Hello,
    HistoryPage,
    HistoryRequest,
    Incoming,
    ListUsers,
    Login,
    Register,
    Response,
    SendTo,
    Status,
    StoredMessage,
    UserList,
)
from chatroom.server.storage.sqlite_store import MIGRATIONS
from chatroom.testing import FAILURE, FAILURE_BYTES, MALFORMED_BYTES, OK, OK_BYTES, eventually

REGISTERED = Response(Status.REGISTERED)
STORED = Response(Status.STORED)


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def chat(server_process, data_dir):
    """chat(*args) -> a server process keeping its database in data_dir (kept across restarts)."""
    return lambda *args: server_process(*args, data_dir=data_dir)


def extended(peer_at, address, source="127.0.0.1"):
    peer = peer_at(address, source=source)
    assert peer.request(Hello(1)) == OK
    return peer


def registered(peer_at, address, name, password="correct horse"):
    peer = extended(peer_at, address)
    assert peer.request(Register(name, password)) == OK
    return peer


def test_register_then_log_in_only_with_the_password(chat, peer_at):
    server = chat()
    alice = registered(peer_at, server.address, "alice")
    assert alice.request(ListUsers()) == UserList(("alice",))
    alice.close()
    again = extended(peer_at, server.address)
    assert again.request(Login("alice")) == REGISTERED
    assert again.request(Authenticate("alice", "wrong")) == FAILURE
    assert again.request(Authenticate("alice", "correct horse")) == OK
    assert again.request(ListUsers()) == UserList(("alice",))
    assert extended(peer_at, server.address).request(Register("alice", "mine now")) == FAILURE


def test_a_name_in_use_cannot_be_registered_by_someone_else(chat, peer_at):
    server = chat()
    bob = peer_at(server.address)
    bob.login("bob")
    assert extended(peer_at, server.address).request(Register("bob", "x")) == FAILURE
    assert bob.request(Hello(1)) == OK
    assert bob.request(Register("bob", "bobs")) == OK  # his own name: now registered


def test_change_password(chat, peer_at):
    server = chat()
    alice = registered(peer_at, server.address, "alice", "old one")
    assert alice.request(ChangePassword("wrong", "new one")) == FAILURE
    assert alice.request(ChangePassword("old one", "new one")) == OK
    alice.close()
    again = extended(peer_at, server.address)
    assert again.request(Authenticate("alice", "old one")) == FAILURE
    assert again.request(Authenticate("alice", "new one")) == OK


def test_failed_passwords_are_throttled_per_name_and_address_without_locking_the_owner_out(chat, peer_at):
    server = chat()
    registered(peer_at, server.address, "alice", "right").close()
    registered(peer_at, server.address, "bob", "right").close()
    guesser = extended(peer_at, server.address)
    for guess in ["a", "b", "c"]:
        assert guesser.request(Authenticate("alice", guess)) == FAILURE
    # The fourth try from that address fails even with the right password...
    assert guesser.request(Authenticate("alice", "right")) == FAILURE
    # ...but the guesses do not lock alice out from elsewhere.
    assert extended(peer_at, server.address, source="127.0.0.2").request(Authenticate("alice", "right")) == OK
    # An address guessing at many names is held back for every name.
    for number in range(7):
        assert guesser.request(Authenticate(f"user{number}", "guess")) == FAILURE
    assert guesser.request(Authenticate("bob", "right")) == FAILURE
    assert extended(peer_at, server.address, source="127.0.0.3").request(Authenticate("bob", "right")) == OK


def test_a_client_that_never_says_hello_gets_the_seed_protocol_byte_for_byte(chat, peer_at):
    server = chat()
    registered(peer_at, server.address, "alice").close()
    old = peer_at(server.address)
    old.send_raw(encode(Login("alice")))
    assert old.recv_exact(6) == FAILURE_BYTES  # registered: for an old client, simply taken
    old.send_raw(encode(Register("x", "y")) + encode(Authenticate("alice", "correct horse")))
    assert old.recv_exact(12) == MALFORMED_BYTES * 2  # unknown types, as ever
    old.send_raw(encode(HistoryRequest("alice", 5)) + encode(Login("bob")))
    assert old.recv_exact(12) == MALFORMED_BYTES + OK_BYTES
    old.send_raw(encode(SendTo("alice", "are you there?")))
    assert old.recv_exact(6) == FAILURE_BYTES  # offline: not kept for an old sender


def test_offline_messages_survive_a_restart_and_arrive_in_order(chat, peer_at):
    server = chat()
    registered(peer_at, server.address, "alice").close()
    bob = extended(peer_at, server.address)
    bob.login("bob")
    for i in range(3):
        assert bob.request(SendTo("alice", f"while you were out {i}")) == STORED
    bob.close()
    server.terminate()
    server = chat()
    alice = extended(peer_at, server.address)
    assert alice.request(Authenticate("alice", "correct horse")) == OK
    stored = [alice.next_event() for _ in range(3)]
    assert [(m.sender, m.text) for m in stored] == [("bob", f"while you were out {i}") for i in range(3)]
    assert all(isinstance(m, StoredMessage) and abs(m.time_ms / 1000 - time.time()) < 60 for m in stored)
    alice.close()
    again = extended(peer_at, server.address)
    assert again.request(Authenticate("alice", "correct horse")) == OK
    assert again.request(ListUsers()) == UserList(("alice",))  # delivered once: nothing more came


def test_history_is_kept_for_both_and_readable_by_them_only(chat, peer_at):
    server = chat()
    alice = registered(peer_at, server.address, "alice")
    bob = registered(peer_at, server.address, "bob")
    carol = registered(peer_at, server.address, "carol")
    assert alice.request(SendTo("bob", "hi bob")) == OK
    assert bob.next_event() == Incoming("alice", "hi bob")
    assert bob.request(SendTo("alice", "hi alice")) == OK
    assert alice.next_event() == Incoming("bob", "hi alice")
    page = alice.request(HistoryRequest("bob", 20))
    assert isinstance(page, HistoryPage) and page.peer == "bob"
    assert [(e.sent, e.text) for e in page.entries] == [(True, "hi bob"), (False, "hi alice")]
    assert [(e.sent, e.text) for e in bob.request(HistoryRequest("alice", 20)).entries] == [
        (False, "hi bob"),
        (True, "hi alice"),
    ]
    assert carol.request(HistoryRequest("alice", 20)).entries == ()  # carol's own, with alice: none
    assert carol.request(HistoryRequest("bob", 20)).entries == ()
    unregistered = extended(peer_at, server.address)
    unregistered.login("dave")
    assert unregistered.request(HistoryRequest("alice", 20)) == FAILURE
    # Paging: older than the newest entry.
    older = alice.request(HistoryRequest("bob", 20, page.entries[-1].id))
    assert [e.text for e in older.entries] == ["hi bob"]


def test_offline_messages_and_history_expire(chat, peer_at):
    server = chat("--history-days", str(1 / 86400))  # one second
    alice = registered(peer_at, server.address, "alice")
    alice.close()
    bob = registered(peer_at, server.address, "bob")
    assert bob.request(SendTo("alice", "soon gone")) == STORED
    gevent.sleep(1.5)  # not a wait for an event: the time that makes the message too old
    again = extended(peer_at, server.address)
    assert again.request(Authenticate("alice", "correct horse")) == OK
    assert again.request(HistoryRequest("bob", 20)).entries == ()  # the stored message was never delivered
    assert again.request(ListUsers()) == UserList(("alice", "bob"))


def test_no_history_keeps_no_history(chat, peer_at):
    server = chat("--no-history")
    alice = registered(peer_at, server.address, "alice")
    registered(peer_at, server.address, "bob")
    assert alice.request(SendTo("bob", "gone")) == OK
    assert alice.request(HistoryRequest("bob", 20)).entries == ()


def test_sigterm_commits_what_was_acknowledged(chat, peer_at, data_dir):
    server = chat()
    registered(peer_at, server.address, "alice").close()
    bob = registered(peer_at, server.address, "bob")
    for i in range(200):  # (a quarter of a mailbox: one sender's share)
        bob.send(SendTo("alice", f"m{i}"))
    assert all(bob.next_event() == STORED for _ in range(200))
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0
    with sqlite3.connect(data_dir / "chatroom" / "chatroom.db") as db:
        assert db.execute("SELECT count(*) FROM offline WHERE recipient = 'alice'").fetchone() == (200,)
        assert db.execute("SELECT version FROM schema_version").fetchone() == (len(MIGRATIONS),)


def test_the_database_is_made_on_first_run_and_its_mode_is_wal(chat, data_dir):
    chat()
    with sqlite3.connect(data_dir / "chatroom" / "chatroom.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# --- The client ----------------------------------------------------------------------------------


def client(address, lines, password=None, *args):
    env = {key: value for key, value in os.environ.items() if key != "CHATROOM_PASSWORD"}
    if password is not None:
        env["CHATROOM_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "chatroom.client", *args, *map(str, address)],
        input="".join(line + "\n" for line in lines).encode(),
        capture_output=True,
        env=env,
        timeout=30,
    )


def test_the_client_registers_logs_in_and_shows_what_it_missed(chat, peer_at, tmp_path):
    server = chat()
    result = client(server.address, ["register alice"], "s3cret")
    assert result.stdout == b"Success\n" and result.returncode == 0
    assert client(server.address, ["login alice"]).stdout == b"Failure\n"  # no password given
    assert client(server.address, ["login alice"], "wrong").stdout == b"Failure\n"
    bob = extended(peer_at, server.address)
    bob.login("bob")
    assert bob.request(SendTo("alice", "while you were out")) == STORED
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    result = client(server.address, ["login alice", "history bob"], None, "--password-file", str(password_file))
    lines = result.stdout.decode().splitlines()
    assert lines[:2] == ["Success", "bob: while you were out"] or lines[:2] == ["bob: while you were out", "Success"]
    assert lines[2].endswith(" bob: while you were out") and len(lines) == 3


def test_the_client_says_stored(chat, peer_at):
    server = chat()
    registered(peer_at, server.address, "alice").close()
    result = client(server.address, ["login bob", "sendto alice hi"])
    assert result.stdout == b"Success\nStored\n"


def test_messages_a_registered_user_never_took_are_kept_when_they_are_dropped(chat, peer_at):
    server = chat("--sendq", "65536", "--send-timeout", "1")
    registered(peer_at, server.address, "alice")  # and never reads
    bob = registered(peer_at, server.address, "bob")
    replies = []
    with gevent.Timeout(20):
        while not replies or replies[-1] != STORED:
            replies.append(bob.request(SendTo("alice", f"{len(replies)} " + "x" * 30000)))
    server.wait_for_log("kept for later")
    kept = int(re.search(r"(\d+) of them kept for later", server.log_text()).group(1))
    assert kept >= 1
    again = extended(peer_at, server.address)
    assert again.request(Authenticate("alice", "correct horse")) == OK
    stored = [again.next_event() for _ in range(kept + 1)]  # those dropped, then the one STORED
    numbers = [int(message.text.split()[0]) for message in stored]
    assert numbers == sorted(numbers) and numbers[-1] == len(replies) - 1


def test_a_logout_while_stored_messages_are_handed_out_loses_nothing_and_logs_no_error(chat, peer_at):
    from chatroom.protocol import Logout
    from chatroom.testing import assert_clean_log

    server = chat("--mailbox-share", "1", "--mailbox-mb", "64")
    registered(peer_at, server.address, "alice").close()
    bob = registered(peer_at, server.address, "bob")
    count = 200  # pages of 64 of 20 KB: a page is more than her queue's bound (--sendq 1 MB)
    bob.send(*[SendTo("alice", f"{i} " + "x" * 20_000) for i in range(count)])
    assert all(bob.next_event() == STORED for _ in range(count))
    # Alice logs in without reading: her first page waits for her, and so does the hand-out.
    leaving = peer_at(server.address, receive_buffer=4096)
    assert leaving.request(Hello(1)) == OK
    leaving.send(Authenticate("alice", "correct horse"))
    server.wait_for_log("login alice (")
    bob.send(SendTo("alice", "live"))  # held behind the stored ones (answered once she has room)
    leaving.send(Logout())  # read once she has taken some: before the hand-out has done
    texts = []
    assert leaving.next_event() == OK
    while (event := leaving.next_event()) != OK:  # what came before her logout's OK
        texts.append(event.text)
    assert bob.next_event() in (OK, STORED)  # (STORED: her logout came first)
    leaving.close()
    again = extended(peer_at, server.address)
    again.send(Authenticate("alice", "correct horse"))
    assert again.next_event() == OK
    while len(set(texts)) < count + 1:  # the pages not handed over, and the live message kept
        texts.append(again.next_event().text)
    assert set(texts) == {f"{i} " + "x" * 20_000 for i in range(count)} | {"live"}
    assert_clean_log(server.log_text())


def test_stored_messages_come_in_pages_and_leave_the_store_only_once_handed_over(chat, peer_at, data_dir):
    server = chat("--mailbox-share", "1", "--mailbox-mb", "64")
    registered(peer_at, server.address, "alice").close()
    bob = registered(peer_at, server.address, "bob")
    count = 600  # pages of 64
    bob.send(*[SendTo("alice", f"{i} " + "x" * 20_000) for i in range(count)])
    assert all(bob.next_event() == STORED for _ in range(count))
    db_path = data_dir / "chatroom" / "chatroom.db"

    def left_in_store():
        with sqlite3.connect(db_path) as db:
            return db.execute("SELECT count(*) FROM offline WHERE recipient = 'alice'").fetchone()[0]

    # Alice logs in, takes the first page, and is gone: what was not handed over stays kept.
    leaving = peer_at(server.address, receive_buffer=4096)
    assert leaving.request(Hello(1)) == OK
    leaving.send(Authenticate("alice", "correct horse"))
    assert leaving.next_event() == OK
    taken = [int(leaving.next_event().text.split()[0]) for _ in range(64)]
    eventually(lambda: left_in_store() <= count - 64)  # a page leaves once handed over...
    leaving.close()

    eventually(lambda: server.log_text().count("logout alice") == 2)  # (registering logged her in once)
    # Whole pages leave the store once handed over to the connection (at most what the
    # kernel's buffers held for her); the rest stays kept.
    left = left_in_store()
    assert left % 64 == count % 64 and count - 64 * 5 <= left <= count - 64  # ...and only then
    again = extended(peer_at, server.address)
    again.send(Authenticate("alice", "correct horse"))
    assert again.next_event() == OK
    rest = [int(again.next_event().text.split()[0]) for _ in range(left)]
    assert taken == list(range(64)) and rest == list(range(count - left, count))
    eventually(lambda: left_in_store() == 0)  # all handed over this time
