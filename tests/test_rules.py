"""The chat rules without a socket: requests in, replies and deliveries out, over the
in-process directory and an in-memory SQLite store (as h11's ConnectionPair tests h11)."""

import time

import gevent
import pytest
from gevent.event import AsyncResult, Event

from chatroom.codec import Decoder, encode, without_id
from chatroom.protocol import (
    EXTENSION_VERSION,
    Authenticate,
    ChangePassword,
    DirectMessage,
    FrameTooLarge,
    Hello,
    HistoryPage,
    HistoryRequest,
    Incoming,
    ListUsers,
    Login,
    Logout,
    Malformed,
    Reason,
    Register,
    Response,
    SendTo,
    ServerVersion,
    Status,
    StoredMessage,
    UserList,
)
from chatroom.server.pending import Pending
from chatroom.server.presence.directory import LocalDirectory, RemoteRecipient
from chatroom.server.rules import Rules
from chatroom.server.storage.accounts import Accounts
from chatroom.server.storage.quotas import Quotas
from chatroom.server.storage.sqlite_store import SQLiteStore
from chatroom.server.storage.store import now_ms
from chatroom.testing import WAIT, eventually
from tests.conftest import CHEAP

OK = Response(Status.OK)
FAILURE = Response(Status.FAILURE)
MALFORMED = Response(Status.MALFORMED)
REGISTERED = Response(Status.REGISTERED)
STORED = Response(Status.STORED)


class Client:
    """One connection's Rules, with a mailbox that keeps what is delivered to it."""

    def __init__(self, directory, accounts, peer="127.0.0.1:40000", rooms=None):
        self.rules = Rules(self, directory, accounts, peer, rooms)
        self.peer, self.transport = peer, "test"  # (as a session lists itself)
        self.full = False  # offer() finds the queue full
        self.wants_ids = False  # set by the rules at HELLO 3
        self.received: list = []
        self.arrived = Event()  # set whenever something is delivered
        self.disconnected = False
        self.ended = False  # by another of its user's sessions

    # The Mailbox the directory hands messages to.
    def deliver(self, frame: bytes, wait: bool = True) -> bool:
        held = self.rules.held
        (held if held is not None else self.received).append(frame)
        self.arrived.set()
        return True

    def offer(self, frame: bytes) -> bool:
        if self.full:
            self.disconnected = True
            return False
        self.received.append(frame)
        self.arrived.set()
        return True

    def room_sink(self):
        return self

    def disconnect(self) -> None:
        self.disconnected = True

    def end_session(self) -> None:
        self.ended = True

    def hold_pushes(self) -> None:
        pass  # (what is delivered here is kept in order as it comes: there is no reply queue)

    def ask(self, request) -> list:
        """The reply to request (settled, if it is pending), decoded; after a login, with the
        pages of stored messages the session would hand out behind it."""
        reply = self.rules.answer(request)
        if isinstance(reply, Pending):
            reply = reply.reply()
        while self.rules.held is not None:
            reply += self.rules.next_stored()
        return Decoder.for_client().receive_data(reply)

    def messages(self) -> list:
        return Decoder.for_client().receive_data(b"".join(self.received))

    def next_of(self, kind):
        """The next frame of type kind delivered (what came before it is let go), within WAIT."""
        with gevent.Timeout(WAIT):
            while True:
                self.arrived.clear()
                for message in self.messages():
                    if isinstance(message, kind):
                        self.received.clear()
                        return message
                self.arrived.wait()


@pytest.fixture
def connect(directory, accounts):
    """connect(name=None, hello=False): a new connection's Client, logged in as name if given."""

    def connect(name=None, hello=False, peer="127.0.0.1:40000"):
        client = Client(directory, accounts, peer)
        if hello:
            assert client.ask(Hello(1)) == [OK]
        if name is not None:
            assert client.ask(Login(name)) == [OK]
        return client

    return connect


def registered(connect, name, password="secret"):
    """A client that registered name (and is logged in with it)."""
    client = connect(hello=True)
    assert client.ask(Register(name, password)) == [OK]
    return client


# --- The seed protocol ---------------------------------------------------------------------


def test_login_takes_a_free_valid_name_once(connect):
    alice = connect()
    assert alice.ask(Login("alice")) == [OK]
    assert alice.ask(Login("alice2")) == [FAILURE]  # already logged in
    assert connect().ask(Login("alice")) == [FAILURE]  # taken
    assert connect().ask(Login("has space")) == [FAILURE]
    assert connect().ask(Login("")) == [FAILURE]
    assert connect().ask(Login("x" * 21)) == [FAILURE]


def test_a_look_alike_of_a_logged_in_name_is_refused(connect):
    connect("bob")
    assert connect().ask(Login("b\u043eb")) == [FAILURE]  # Cyrillic o


def test_list_names_everyone_logged_in_sorted(connect):
    connect("carol")
    alice = connect("alice")
    assert alice.ask(ListUsers()) == [UserList(("alice", "carol"))]


def test_sendto_delivers_to_the_recipient_and_answers_ok(connect):
    alice, bob = connect("alice"), connect("bob")
    assert alice.ask(SendTo("bob", "hi")) == [OK]
    assert bob.messages() == [Incoming("alice", "hi")]
    assert alice.received == []


def test_sendto_fails_when_not_logged_in_or_nobody_is_there_or_the_text_is_empty(connect):
    connect("bob")
    assert connect().ask(SendTo("bob", "hi")) == [FAILURE]
    alice = connect("alice")
    assert alice.ask(SendTo("nobody", "hi")) == [FAILURE]
    assert alice.ask(SendTo("bob", "")) == [FAILURE]


def test_logout_frees_the_name_and_fails_when_not_logged_in(connect):
    alice = connect("alice")
    assert alice.ask(Logout()) == [OK]
    assert alice.ask(Logout()) == [FAILURE]
    assert connect().ask(Login("alice")) == [OK]


def test_a_list_too_long_for_one_frame_is_a_failure_as_the_seed_protocol_says(connect, directory, monkeypatch):
    names = [chr(0x65E5) * 19 + chr(0x4E00 + number) for number in range(5_000)]  # (61 bytes each: 305 KB)
    monkeypatch.setattr(directory, "names", lambda: names)
    assert connect().ask(ListUsers()) == [FAILURE]
    newer = connect(hello=True)
    assert newer.ask(Hello(2)) == [OK] and newer.ask(ListUsers()) == [Response(Status.FAILURE, Reason.UNAVAILABLE)]
    monkeypatch.setattr(directory, "names", lambda: names[:4000])  # (244 KB: it fits)
    assert connect().ask(ListUsers()) == [UserList(tuple(names[:4000]))]


def test_malformed_frames_and_extension_requests_without_hello_are_malformed(connect):
    client = connect()
    assert client.ask(Malformed(0x42)) == [MALFORMED]
    assert client.ask(FrameTooLarge(0x03, 1 << 30)) == [MALFORMED]
    assert client.ask(Register("alice", "secret")) == [MALFORMED]
    assert client.ask(HistoryRequest("bob", 10)) == [MALFORMED]


def test_hello_is_ok_for_a_version_the_server_has_and_names_its_own_to_a_newer_client(connect):
    assert connect().ask(Hello(1)) == [OK]
    newer = connect()
    assert newer.ask(Hello(EXTENSION_VERSION + 5)) == [ServerVersion(EXTENSION_VERSION)]
    assert newer.ask(Register("nova", "secret")) == [OK]  # the connection speaks the server's version


def test_without_accounts_the_extension_fails(directory):
    client = Client(directory, None)
    assert client.ask(Hello(1)) == [OK]
    assert client.ask(Register("alice", "secret")) == [FAILURE]
    assert client.ask(Login("alice")) == [OK]


# --- The extension -------------------------------------------------------------------------


def test_a_registered_name_needs_its_password(connect):
    registered(connect, "alice").ask(Logout())
    assert connect(hello=True).ask(Login("alice")) == [REGISTERED]
    assert connect().ask(Login("alice")) == [FAILURE]  # a seed client cannot give a password
    assert connect(hello=True).ask(Authenticate("alice", "wrong")) == [FAILURE]
    assert connect(hello=True).ask(Authenticate("alice", "secret")) == [OK]


def test_look_alikes_of_a_registered_name_are_refused_whether_or_not_it_is_online(connect):
    registered(connect, "bob").ask(Logout())
    registered(connect, "alice")
    for name in ("b\u043eb", "bob\u0307", "alice\u0335", "aIice"):
        assert connect(hello=True).ask(Login(name)) == [FAILURE], name
        assert connect(hello=True).ask(Register(name, "other")) == [FAILURE], name
    assert connect().ask(Login("b\u043eb")) == [FAILURE]  # a seed client too
    assert connect().ask(Login("bobby")) == [OK]


def test_register_fails_for_a_name_taken_or_registered(connect):
    connect("bob")
    assert connect(hello=True).ask(Register("bob", "secret")) == [FAILURE]
    registered(connect, "alice").ask(Logout())
    carol = connect(hello=True)
    assert carol.ask(Register("alice", "other")) == [FAILURE]
    assert carol.rules.name is None  # the name it claimed for a moment is given back
    assert connect(hello=True).ask(Register("dave", "")) == [FAILURE]


def test_a_logged_in_user_registers_their_own_name(connect):
    erin = connect("erin", hello=True)
    assert erin.ask(Register("frank", "secret")) == [FAILURE]
    assert erin.ask(Register("erin", "secret")) == [OK]


def test_password_failures_are_throttled(connect):
    registered(connect, "alice").ask(Logout())
    for _ in range(3):
        assert connect(hello=True).ask(Authenticate("alice", "wrong")) == [FAILURE]
    assert connect(hello=True).ask(Authenticate("alice", "secret")) == [FAILURE]  # for a minute


def test_a_message_to_an_offline_registered_user_is_stored_then_delivered_at_login(connect):
    registered(connect, "bob").ask(Logout())
    alice = connect("alice", hello=True)
    assert alice.ask(SendTo("bob", "while you were out")) == [STORED]
    assert connect("carol").ask(SendTo("bob", "seed clients are not told")) == [FAILURE]
    bob = connect(hello=True)
    (reply_ok, stored) = bob.ask(Authenticate("bob", "secret"))
    assert reply_ok == OK
    assert isinstance(stored, StoredMessage) and (stored.sender, stored.text) == ("alice", "while you were out")


def test_live_messages_during_login_follow_the_stored_ones(connect, accounts):
    registered(connect, "bob").ask(Logout())
    alice = connect("alice", hello=True)
    assert alice.ask(SendTo("bob", "stored")) == [STORED]
    offline_page = accounts.store.offline_page

    def offline_page_while_alice_writes(name, limit):
        if not written:
            written.append(True)
            assert alice.ask(SendTo("bob", "live")) == [OK]  # bob is logged in by now
        return offline_page(name, limit)

    written: list = []
    accounts.store.offline_page = offline_page_while_alice_writes
    bob = connect(hello=True)
    replies = bob.ask(Authenticate("bob", "secret"))
    assert [type(reply) for reply in replies] == [Response, StoredMessage, Incoming]
    assert (replies[1].text, replies[2].text) == ("stored", "live")
    assert bob.received == []


def test_a_logout_while_stored_messages_are_handed_out_keeps_the_live_ones_held_behind_them(connect):
    registered(connect, "bob").ask(Logout())
    alice = connect("alice", hello=True)
    assert alice.ask(SendTo("bob", "stored")) == [STORED]
    bob = connect(hello=True)
    login = Decoder.for_client().receive_data(bob.rules.answer(Authenticate("bob", "secret")))
    assert [type(reply) for reply in login] == [Response, StoredMessage]  # (the first page; more to come)
    assert alice.ask(SendTo("bob", "live")) == [OK]  # held behind the stored ones
    assert bob.ask(Logout()) == [OK]
    assert bob.rules.held is None and bob.rules.next_stored() == b""  # the hand-out is over, quietly
    again = connect(hello=True).ask(Authenticate("bob", "secret"))
    # The page handed over is still stored (it leaves the store only once the next is asked
    # for), and the live message bob never took is kept behind it.
    assert [(type(m), m.text) for m in again[1:]] == [(StoredMessage, "stored"), (StoredMessage, "live")]


def test_a_logout_while_the_store_removes_a_handed_out_page_ends_the_hand_out(connect, accounts):
    registered(connect, "bob").ask(Logout())
    alice = connect("alice", hello=True)
    assert alice.ask(SendTo("bob", "stored")) == [STORED]
    bob = connect(hello=True)
    bob.rules.answer(Authenticate("bob", "secret"))
    remove_offline = accounts.store.remove_offline

    def remove_offline_while_the_connection_ends(name, mark):
        remove_offline(name, mark)
        bob.rules.log_out("disconnected")  # (the store's write waits: the session may end meanwhile)

    accounts.store.remove_offline = remove_offline_while_the_connection_ends
    assert bob.rules.next_stored() == b"" and bob.rules.held is None
    accounts.store.remove_offline = remove_offline
    assert connect(hello=True).ask(Authenticate("bob", "secret")) == [OK]  # (handed over, then removed)


def test_the_longest_message_from_the_longest_name_is_read_back_and_kept(connect):
    longest, text = chr(0x20000) * 20, chr(0x20000) * 65535  # (four bytes each: over MAX_BODY with an id)
    bob = registered(connect, "bob")
    sender = registered(connect, longest)
    assert sender.ask(SendTo("bob", text)) == [OK]
    [page] = bob.ask(HistoryRequest(longest, 10))
    assert [entry.text for entry in page.entries] == [text]  # (in a page of its own, not an empty one)
    frame = encode(DirectMessage(longest, 1 << 62, now_ms(), text))
    assert bob.rules.keep_undelivered([frame]) == 1
    bob.ask(Logout())
    [_, kept] = connect(hello=True).ask(Authenticate("bob", "secret"))
    assert (kept.sender, kept.text) == (longest, text)


def test_change_password(connect):
    alice = registered(connect, "alice")
    assert alice.ask(ChangePassword("wrong", "new")) == [FAILURE]
    assert alice.ask(ChangePassword("secret", "new")) == [OK]
    alice.ask(Logout())
    assert connect(hello=True).ask(Authenticate("alice", "new")) == [OK]
    assert connect("bob", hello=True).ask(ChangePassword("x", "y")) == [FAILURE]  # not registered


def test_history_is_for_registered_users_and_holds_both_sides(connect):
    alice, bob = registered(connect, "alice"), connect("bob", hello=True)
    assert alice.ask(SendTo("bob", "one")) == [OK]
    assert bob.ask(SendTo("alice", "two")) == [OK]
    (page,) = alice.ask(HistoryRequest("bob", 10))
    assert isinstance(page, HistoryPage)
    assert [(entry.sent, entry.text) for entry in page.entries] == [(True, "one"), (False, "two")]
    assert alice.ask(HistoryRequest("bob", 0)) == [FAILURE]
    assert bob.ask(HistoryRequest("alice", 10)) == [FAILURE]  # bob is not registered


def test_the_history_keeps_any_text_exactly(connect):
    """Rows reach SQLite many to a statement, each text a parameter of its own: nothing is cut
    or changed, whatever it holds (a NUL, JSON's escapes, line separators)."""
    alice = registered(connect, "alice")
    connect("bob", hello=True)  # (online: the messages are relayed and kept)
    as_json = ["😀 \u2028 literally \\u0000", 'quote " \\ back', "tab\tand\nnew line", "é" * 300, "\U0001f600" * 2]
    with_nul = ["a\x00b", "\x00"]
    for texts in (as_json, with_nul):  # (a HISTORY commits what came before it: two batches)
        for text in texts:
            assert alice.ask(SendTo("bob", text)) == [OK]
        (page,) = alice.ask(HistoryRequest("bob", 20))
    assert [entry.text for entry in page.entries] == as_json + with_nul


def test_a_name_registered_anew_sees_nothing_said_before_its_account(connect):
    bob, carol = registered(connect, "bob"), connect("carol", hello=True)  # carol: not registered
    assert bob.ask(SendTo("carol", "our secret")) == [OK]
    assert carol.ask(SendTo("bob", "safe with me")) == [OK]
    assert carol.ask(HistoryRequest("bob", 10)) == [FAILURE]  # only the registered side reads it
    carol.ask(Logout())
    said = now_ms()
    eventually(lambda: now_ms() > said)  # (an account is made at least a millisecond after the last message)
    mallory = registered(connect, "carol", "mallory's")
    assert mallory.ask(HistoryRequest("bob", 10)) == [HistoryPage("bob", ())]
    assert mallory.ask(SendTo("bob", "hi, I am carol now")) == [OK]
    (page,) = mallory.ask(HistoryRequest("bob", 10))
    assert [entry.text for entry in page.entries] == ["hi, I am carol now"]
    (page,) = bob.ask(HistoryRequest("carol", 10))
    assert [entry.text for entry in page.entries] == ["our secret", "safe with me", "hi, I am carol now"]


def test_undelivered_messages_of_a_registered_user_are_kept(connect):
    bob = registered(connect, "bob")
    frames = [encode(Incoming("alice", "one")), encode(Incoming("alice", "two"))]
    assert bob.rules.keep_undelivered(frames) == 2
    assert connect("carol").rules.keep_undelivered(frames) == 0  # not registered: nothing kept
    bob.ask(Logout())
    replies = connect(hello=True).ask(Authenticate("bob", "secret"))
    assert [reply.text for reply in replies[1:]] == ["one", "two"]


# --- Messages for other nodes --------------------------------------------------------------


class Courier:
    """Stands in for the cluster's courier: each message's outcome is set by the test."""

    def __init__(self):
        self.sent: list = []

    def send_later(self, recipient, frame):
        outcome = AsyncResult()
        self.sent.append((recipient, frame, outcome))
        return outcome


class ClusterDirectory(LocalDirectory):
    """The local directory, with everyone not here reached through a courier (as in a cluster)."""

    def __init__(self):
        super().__init__()
        self.courier = Courier()
        here = self.here  # (LocalDirectory's find is an attribute: the dict's own look-up)
        self.find = lambda name: here(name) or RemoteRecipient(self.courier, name)


def test_a_message_for_another_node_is_answered_once_that_node_has_it(accounts):
    directory = ClusterDirectory()
    directory.start()
    alice = Client(directory, accounts)
    alice.ask(Login("alice"))
    pending = alice.rules.answer(SendTo("zed", "hi"))
    assert isinstance(pending, Pending)
    ((recipient, frame, outcome),) = directory.courier.sent
    # It crosses with its id; that node hands an older client the INCOMING.
    [crossing] = Decoder.for_client().receive_data(frame)
    assert recipient == "zed" and isinstance(crossing, DirectMessage) and crossing.text == "hi"
    assert without_id(frame) == encode(Incoming("alice", "hi"))
    outcome.set(True)
    assert pending.reply() == encode(OK)
    for delivered, reply in [(False, FAILURE), (ConnectionError("Redis"), FAILURE)]:
        pending = alice.rules.answer(SendTo("zed", "again"))
        if isinstance(delivered, Exception):
            directory.courier.sent[-1][2].set_exception(delivered)
        else:
            directory.courier.sent[-1][2].set(delivered)
        assert pending.reply() == encode(reply)


# --- Quotas --------------------------------------------------------------------------------


def quota_rules(directory, **quotas):
    """connect(name) over accounts with these quotas (an in-memory store of their own)."""
    history_days = quotas.pop("history_days", 7.0)
    accounts = Accounts(
        SQLiteStore(":memory:", history_days, quotas=Quotas(**quotas)), hasher=CHEAP, quotas=Quotas(**quotas)
    )
    accounts.start()

    def connect(name=None, peer="127.0.0.1:40000"):
        client = Client(directory, accounts, peer)
        assert client.ask(Hello(1)) == [OK]
        if name is not None:
            assert client.ask(Login(name)) == [OK]
        return client

    return accounts, connect


def test_one_sender_fills_at_most_its_share_of_a_mailbox(directory):
    accounts, connect = quota_rules(directory, mailbox_share=0.1)
    try:
        away = connect()
        assert away.ask(Register("away", "secret")) == [OK]
        away.ask(Logout())
        stranger, friend = connect("stranger"), connect("friend")
        replies = [stranger.ask(SendTo("away", f"spam {i}"))[0] for i in range(120)]
        assert replies == [STORED] * 100 + [FAILURE] * 20  # a tenth of 1,000
        assert friend.ask(SendTo("away", "still gets through")) == [STORED]
    finally:
        accounts.stop()


def test_a_mailbox_holds_a_bounded_number_of_bytes(directory):
    accounts, connect = quota_rules(directory, mailbox_mb=0.01, mailbox_share=1.0)
    try:
        away = connect()
        assert away.ask(Register("away", "secret")) == [OK]
        away.ask(Logout())
        sender = connect("sender")
        replies = [sender.ask(SendTo("away", "x" * 1000))[0] for i in range(12)]
        assert replies == [STORED] * 10 + [FAILURE] * 2
    finally:
        accounts.stop()


def test_expired_messages_leave_the_mailbox_when_it_is_written_to(directory):
    accounts, connect = quota_rules(directory, history_days=0.3 / 86_400, mailbox_mb=0.01, mailbox_share=1.0)
    try:
        away = connect()
        assert away.ask(Register("away", "secret")) == [OK]
        away.ask(Logout())
        sender = connect("sender")
        assert [sender.ask(SendTo("away", "x" * 1000))[0] for _ in range(11)] == [STORED] * 10 + [FAILURE]
        # Once past the time messages are kept, the full mailbox holds only expired ones.
        eventually(lambda: sender.ask(SendTo("away", "a new one")) == [STORED], timeout=WAIT)
    finally:
        accounts.stop()


def test_registrations_per_address_are_bounded(directory):
    accounts, connect = quota_rules(directory, registrations_per_hour=3)
    try:
        for i in range(3):
            assert connect(peer="10.0.0.1:1").ask(Register(f"name{i}", "secret")) == [OK]
        assert connect(peer="10.0.0.1:1").ask(Register("one-more", "secret")) == [FAILURE]
        assert connect(peer="10.0.0.2:1").ask(Register("one-more", "secret")) == [OK]
    finally:
        accounts.stop()


def test_an_ipv6_client_counts_as_its_64_and_an_ipv4_mapped_one_as_its_ipv4_address(directory):
    """A host takes any address of its /64 at will: without grouping, each new address would
    bring a new quota. An IPv4 client of a dual-stack listener arrives IPv4-mapped."""
    accounts, connect = quota_rules(directory, registrations_per_hour=2)
    try:
        for i, address in enumerate(("2001:db8:0:7::1", "2001:db8:0:7:ffff::2")):
            assert connect(peer=f"{address}:5000").ask(Register(f"six{i}", "secret")) == [OK]
        assert connect(peer="2001:db8:0:7::3:5000").ask(Register("six-more", "secret")) == [FAILURE]
        assert connect(peer="2001:db8:0:8::1:5000").ask(Register("six-more", "secret")) == [OK]  # another /64
        assert connect(peer="10.0.0.9:1").ask(Register("four0", "secret")) == [OK]
        assert connect(peer="::ffff:10.0.0.9:1").ask(Register("four1", "secret")) == [OK]
        assert connect(peer="::ffff:10.0.0.9:2").ask(Register("four-more", "secret")) == [FAILURE]
        assert connect(peer="::ffff:10.0.0.10:1").ask(Register("four-more", "secret")) == [OK]
    finally:
        accounts.stop()


def test_history_past_the_daily_quota_is_relayed_but_not_kept(directory):
    accounts, connect = quota_rules(directory, history_mb_per_day=0.000_5)  # 500 bytes
    try:
        alice = connect()
        assert alice.ask(Register("alice", "secret")) == [OK]
        bob = connect("bob")
        for i in range(10):
            assert alice.ask(SendTo("bob", f"{i} " + "y" * 98)) == [OK]  # 100 bytes each
        assert len(bob.messages()) == 10
        (page,) = alice.ask(HistoryRequest("bob", 100))
        assert [entry.text.split()[0] for entry in page.entries] == ["0", "1", "2", "3", "4"]
    finally:
        accounts.stop()


def test_an_unregistered_senders_history_quota_follows_its_address_whatever_its_name(directory):
    """A name given up is free to take again: an unregistered sender's quota follows its address."""
    accounts, connect = quota_rules(directory, history_mb_per_day=0.000_5)  # 500 bytes
    try:
        bob = connect()
        assert bob.ask(Register("bob", "secret")) == [OK]  # (what is sent to him is kept)
        kept = {}
        for name, address in (("m1", "10.0.0.1"), ("m2", "10.0.0.1"), ("m3", "10.0.0.2")):
            sender = connect(name, peer=f"{address}:1")
            for n in range(3):
                assert sender.ask(SendTo("bob", f"{n} " + "y" * 98)) == [OK]  # 100 bytes each
            sender.ask(Logout())
            (page,) = bob.ask(HistoryRequest(name, 10))
            kept[name] = len(page.entries)
        assert kept == {"m1": 3, "m2": 2, "m3": 3}
    finally:
        accounts.stop()


def test_a_sender_ended_while_its_message_waits_for_the_recipient_still_has_it_kept(directory, accounts, monkeypatch):
    """A delivery may wait (for a recipient's stored messages to go out first); the sender's
    connection may end meanwhile (another of its devices ends it): what it sent is kept as sent."""
    alice = Client(directory, accounts)
    assert alice.ask(Hello(1)) == [OK] and alice.ask(Register("alice", "secret")) == [OK]
    bob = Client(directory, accounts)
    assert bob.ask(Login("bob")) == [OK]

    def delivered_while_alice_ends(frame, wait=True):
        alice.rules.log_out("ended")
        return Client.deliver(bob, frame, wait)

    monkeypatch.setattr(bob, "deliver", delivered_while_alice_ends)
    assert alice.ask(SendTo("bob", "last words")) == [OK]
    accounts.store._worker.flush()
    assert [entry.text for entry in accounts.history("alice", "bob", 10, 0)] == ["last words"]


def test_history_gathers_in_one_batch_while_the_writer_commits_the_one_before(tmp_path):
    """Group commit: rows nobody waits for, written over several rounds of the event loop
    while the thread is still at a batch, go to the database in one transaction after it."""
    import sqlite3

    from chatroom.server.storage.sqlite_worker import SQLiteWorker

    worker = SQLiteWorker(tmp_path / "db")
    worker.start(lambda db: db.executescript("CREATE TABLE t (v INTEGER); CREATE TABLE batches (first, last);"))
    insert, then = "INSERT INTO t (v) VALUES (?)", "INSERT INTO batches VALUES (?, ?)"
    # Another process holds the write lock: the thread waits in the first batch.
    lock = sqlite3.connect(tmp_path / "db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        with gevent.Timeout(WAIT):
            for value in range(1, 6):
                worker.write_bulk(insert, (value,), then=(then,))
                gevent.sleep(0)  # (a round of the event loop: the first batch is handed over)
            lock.execute("ROLLBACK")
            assert worker.call(lambda db: db.execute("SELECT * FROM batches").fetchall()) == [(1, 1), (2, 5)]
            assert worker.call(lambda db: db.execute("SELECT count(*) FROM t").fetchone()) == (5,)
    finally:
        lock.close()
        with gevent.Timeout(WAIT):
            worker.stop()


def test_history_written_a_few_rows_a_round_gathers_before_it_goes_to_an_idle_thread(tmp_path):
    """A transaction costs the database mostly its own pages, not its rows': history handed to
    an idle thread every round would be a transaction a round. It gathers HISTORY_GATHER first,
    and is committed by then without anyone asking."""
    import sqlite3

    from chatroom.server.storage.sqlite_worker import HISTORY_GATHER, SQLiteWorker

    worker = SQLiteWorker(tmp_path / "db")
    worker.start(lambda db: db.executescript("CREATE TABLE t (v INTEGER); CREATE TABLE batches (first, last);"))
    insert, then = "INSERT INTO t (v) VALUES (?)", "INSERT INTO batches VALUES (?, ?)"
    try:
        with gevent.Timeout(WAIT):
            began = time.monotonic()
            for value in range(1, 11):
                worker.write_bulk(insert, (value,), then=(then,))
                gevent.sleep(0.002)  # (the thread idle meanwhile)
            handovers = 2 + int((time.monotonic() - began) / HISTORY_GATHER)  # (the first at once)
            reader = sqlite3.connect(tmp_path / "db")  # (not worker.call: a read hands over at once)
            try:
                eventually(lambda: reader.execute("SELECT count(*) FROM t").fetchone() == (10,), what="all ten rows")
                batches = reader.execute("SELECT first, last FROM batches ORDER BY first").fetchall()
            finally:
                reader.close()
            assert 2 <= len(batches) <= min(handovers, 9) and batches[0] == (1, 1) and batches[-1][1] == 10
    finally:
        with gevent.Timeout(WAIT):
            worker.stop()


def test_a_batch_that_cannot_be_written_fails_alone_and_the_writer_goes_on(tmp_path):
    from chatroom.server.storage.sqlite_worker import SQLiteWorker
    from chatroom.server.storage.store import StoreUnavailable

    worker = SQLiteWorker(tmp_path / "db")
    worker.start(lambda db: db.execute("CREATE TABLE t (v TEXT)"))
    try:
        with gevent.Timeout(WAIT):  # (a writer thread gone would leave these waiting for ever)
            worker.write_bulk("INSERT INTO t (v) VALUES (?)", ("\ud800",))  # (a lone surrogate has no UTF-8)
            with pytest.raises(StoreUnavailable):
                worker.write_and_wait("INSERT INTO t (v) VALUES (?)", ("in the same batch",))
            worker.write_and_wait("INSERT INTO t (v) VALUES (?)", ("later",))
            assert worker.call(lambda db: db.execute("SELECT v FROM t").fetchall()) == [("later",)]
    finally:
        with gevent.Timeout(WAIT):
            worker.stop()
