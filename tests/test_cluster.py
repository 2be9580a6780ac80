"""Cluster mode: chatroom-server processes sharing a real Redis: one redis-server, and again
a Redis Cluster of three masters (every test runs against both).

These tests never skip: without Debian's redis-server (7 or newer) they fail.
"""

import random
import signal
import urllib.error
import urllib.request
from dataclasses import replace
from types import SimpleNamespace

import gevent
import gevent.subprocess
import pytest
import redis

from chatroom.codec import encode
from chatroom.protocol import (
    Authenticate,
    DirectMessage,
    Hello,
    HistoryRequest,
    Incoming,
    ListUsers,
    Login,
    Logout,
    Presence,
    Reason,
    Register,
    Response,
    Resume,
    SendTo,
    Status,
    TokenRequest,
    UserList,
    Watch,
)
from chatroom.room_frames import (
    EventKind,
    GiveRoom,
    Invite,
    Join,
    Kick,
    ListMembers,
    MemberFlag,
    MemberList,
    RoomEvent,
    RoomMessage,
    SetInviteOnly,
    SetTopic,
)
from chatroom.server.message_ids import next_id
from chatroom.server.presence.cluster.directory import RedisDirectory
from chatroom.server.presence.cluster.scripts import INBOX, NODE, USERS, Scripts
from chatroom.server.presence.directory import ENDED
from chatroom.server.rooms.posting import Poster
from chatroom.server.rooms.registry import look_alike_key
from chatroom.server.rooms.room_scripts import POST, TELL
from chatroom.server.rooms.shared import ROOM, SKELETONS, SharedRooms
from chatroom.server.storage.redis_store import RECORDS_PER_CALL, RedisStore
from chatroom.server.storage.store import now_ms
from chatroom.testing import (
    FAILURE,
    OK,
    SERVER_COMMAND,
    WAIT,
    IrcPeer,
    Peer,
    RedisClusterProcess,
    RedisProcess,
    assert_clean_log,
    eventually,
    failure,
    free_port,
    hello_peer,
)

pytestmark = pytest.mark.process

TTL = 3  # --node-ttl for the nodes of these tests: short, yet well above a loaded machine's hiccups


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_server(request, tmp_path):
    """A single Redis, or a Redis Cluster whose stop/start/proc are its directory's master's."""
    if request.param == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        cluster.reset()
        yield cluster
        return
    try:
        server = RedisProcess(tmp_path)
    except FileNotFoundError as missing:
        pytest.fail(str(missing))  # never a skip: CI must run these tests
    yield server
    server.close()


@pytest.fixture
def redis_client(tmp_path):
    """A client of a Redis of its own (no cluster), both closed at the end."""
    server = RedisProcess(tmp_path)
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()
    server.close()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    """One Redis Cluster for the module (forming one takes two seconds), emptied per test."""
    try:
        cluster = RedisClusterProcess(tmp_path_factory.mktemp("redis-cluster"))
    except FileNotFoundError as missing:
        pytest.fail(str(missing))
    yield cluster
    cluster.close()


@pytest.fixture
def nodes(server_process, redis_server):
    """start(n) -> n chatroom-server processes joined through the test's Redis."""

    def start(count=2, *extra):
        # (Started side by side: a node takes most of a second to start, and most tests start two.)
        starting = [
            gevent.spawn(server_process, "--redis", redis_server.url, "--node-ttl", str(TTL), *extra)
            for _ in range(count)
        ]
        gevent.joinall(starting, raise_error=True)
        return [started.value for started in starting]

    return start


def test_users_on_different_nodes_list_each_other_and_chat(nodes, logged_in):
    one, two = nodes(2)
    alice, bob = logged_in(one.address, "alice"), logged_in(two.address, "bob")
    assert alice.request(ListUsers()) == UserList(("alice", "bob"))
    assert bob.request(ListUsers()) == UserList(("alice", "bob"))
    assert alice.request(SendTo("bob", "hello from one")) == OK
    assert bob.next_event() == Incoming("alice", "hello from one")
    assert bob.request(SendTo("alice", "hello from two")) == OK
    assert alice.next_event() == Incoming("bob", "hello from two")
    assert alice.request(SendTo("nobody", "x")) == FAILURE


def test_irc_clients_on_two_nodes_reach_each_other_and_are_told_so(nodes, logged_in):
    irc_ports = [free_port(), free_port()]
    [one], [two] = (nodes(1, "--irc", f"127.0.0.1:{port}") for port in irc_ports)
    for node, port in zip((one, two), irc_ports, strict=True):
        node.wait_for_log(f"IRC on 127.0.0.1:{port}")
    hello_peer(two.address, 4, "dave", "pw").close()
    ann = IrcPeer(("127.0.0.1", irc_ports[0]))
    ann.send("CAP REQ :echo-message")
    assert ann.line() == ":chatroom CAP * ACK :echo-message"
    ann.register("ann")
    bob = logged_in(two.address, "bob")
    dave = IrcPeer(("127.0.0.1", irc_ports[1]))
    dave.register("dave", "pw")
    try:
        # Delivered at the other node: echoed, not refused (it once said 401 for these).
        ann.send("PRIVMSG bob :to a native client there", "PRIVMSG dave :to an IRC client there")
        assert ann.line() == ":ann!ann@chatroom PRIVMSG bob :to a native client there"
        assert ann.line() == ":ann!ann@chatroom PRIVMSG dave :to an IRC client there"
        assert bob.next_event() == Incoming("ann", "to a native client there")
        assert dave.line() == ":ann!ann@chatroom PRIVMSG dave :to an IRC client there"
        dave.send("PRIVMSG ann :and back")
        assert ann.line() == ":dave!dave@chatroom PRIVMSG ann :and back"
        ann.send("PRIVMSG nobody :hello?")
        assert ann.line() == ":chatroom 401 ann nobody :No such nick/channel"
        # A room across the two: each side's messages reach the other.
        ann.send("JOIN #across")
        ann.until("366")
        dave.send("JOIN #across")
        assert ":chatroom 353 dave = #across :ann @dave" in dave.until("366")  # (its names say it)
        assert ann.line() == ":dave!dave@chatroom JOIN :#across"
        # A guest's channel: its first registered member's, dave's, on the other node.
        assert ann.line() == ":dave!dave@chatroom MODE #across +o :dave"
        dave.send("PRIVMSG #across :from two")
        assert ann.line() == ":dave!dave@chatroom PRIVMSG #across :from two"
        ann.send("PRIVMSG #across :from one")
        assert ann.line() == ":ann!ann@chatroom PRIVMSG #across :from one"  # (its echo, in the room's order)
        assert dave.line() == ":ann!ann@chatroom PRIVMSG #across :from one"
        # A guest there out of two rooms shared with ann at its QUIT: one QUIT here too.
        ann.send("JOIN #more")
        ann.until("366")
        gus = IrcPeer(("127.0.0.1", irc_ports[1]))
        gus.register("gus")
        gus.send("JOIN #across,#more")
        assert [ann.line() for _ in range(2)] == [":gus!gus@chatroom JOIN :#across", ":gus!gus@chatroom JOIN :#more"]
        gus.send("QUIT")
        gus.close()
        assert ann.line() == ":gus!gus@chatroom QUIT :logged out"
        ann.send("PING :x")
        assert ann.line() == ":chatroom PONG chatroom :x"
    finally:
        ann.close()
        dave.close()


def test_a_name_is_unique_across_the_cluster(nodes, logged_in, peer_at):
    one, two, three = nodes(3)
    alice = logged_in(one.address, "alice")
    assert peer_at(two.address).request(Login("alice")) == FAILURE
    # Many nodes racing for one name: exactly one wins.
    racers = [peer_at(node.address) for node in (one, two, three) for _ in range(5)]
    for racer in racers:
        racer.send(Login("prize"))
    assert sum(racer.next_event() == OK for racer in racers) == 1
    assert alice.request(ListUsers()) == UserList(("alice", "prize"))


def test_a_look_alike_of_a_name_on_another_node_is_refused(nodes, logged_in, peer_at):
    one, two = nodes(2)
    bob = logged_in(one.address, "bob")
    impostor = peer_at(two.address)
    assert impostor.request(Login("b\u043eb")) == FAILURE  # Cyrillic о
    told = peer_at(two.address)
    assert told.request(Hello(2)) == OK
    assert told.request(Login("b\u043eb")) == failure(Reason.LOOKS_LIKE, "bob")
    assert told.request(Login("bob")) == failure(Reason.NAME_IN_USE)
    bob.close()
    eventually(lambda: impostor.request(Login("b\u043eb")) == OK)
    assert peer_at(one.address).request(Login("bob")) == FAILURE


def test_logout_and_disconnect_free_the_name_cluster_wide(nodes, logged_in, peer_at):
    one, two = nodes(2)
    alice = logged_in(one.address, "alice")
    alice.close()
    eventually(lambda: peer_at(two.address).request(Login("alice")) == OK)


def test_same_node_messages_do_not_touch_redis(nodes, redis_server, logged_in):
    (one,) = nodes(1)
    alice, bob = logged_in(one.address, "alice"), logged_in(one.address, "bob")
    stats = redis_server.client()
    published = stats.info("commandstats").get("cmdstat_spublish", {}).get("calls", 0)
    for i in range(100):
        assert alice.request(SendTo("bob", str(i))) == OK
    assert [bob.next_event().text for _ in range(100)] == [str(i) for i in range(100)]
    assert stats.info("commandstats").get("cmdstat_spublish", {}).get("calls", 0) == published


def test_what_a_lost_subscription_held_is_read_again_nothing_answered_ok_lost(nodes, redis_server, logged_in):
    """Redis drops node two's inbox subscription with batches it counted as taken still in its
    output buffer (its pub/sub limit, lowered here; a restart does the same): node two reads
    them again from its inbox's stream, so bob gets every message alice was answered OK for,
    once each, in order."""
    one, two = nodes(2)
    alice, bob = logged_in(one.address, "alice"), logged_in(two.address, "bob")
    assert alice.request(SendTo("bob", "warm")) == OK
    assert bob.next_event() == Incoming("alice", "warm")
    with redis_server.client() as admin:
        admin.config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
    padding = "x" * 60_000
    acknowledged, received = [], []

    def receive():
        while len(received) < 400:
            received.append(int(bob.next_event().text[:5]))

    receiver = gevent.spawn(receive)
    two.proc.send_signal(signal.SIGSTOP)  # node two reads nothing: Redis's buffer for it grows
    try:
        for first in range(0, 400, 10):  # until Redis drops the subscriber (FAILURE), at most 24 MB
            alice.send(*[SendTo("bob", f"{i:05d}{padding}") for i in range(first, first + 10)])
            answers = [alice.next_event() for _ in range(10)]
            acknowledged += [first + i for i, answer in enumerate(answers) if answer == OK]
            if FAILURE in answers:
                break
    finally:
        two.proc.send_signal(signal.SIGCONT)
    assert FAILURE in answers, "Redis never dropped the subscriber"
    eventually(lambda: len(received) >= len(acknowledged), timeout=WAIT * 2)
    receiver.kill()
    assert received == acknowledged
    two.wait_for_log("read again from Redis")


def test_killed_node_frees_its_users_within_the_ttl(nodes, logged_in, peer_at):
    one, two = nodes(2)
    alice = logged_in(one.address, "alice")
    carol = logged_in(two.address, "carol")
    assert carol.request(ListUsers()) == UserList(("alice", "carol"))
    one.signal(signal.SIGKILL)
    eventually(lambda: carol.request(ListUsers()) == UserList(("carol",)), timeout=TTL + 3)
    assert carol.request(SendTo("alice", "are you there?")) == FAILURE
    assert peer_at(two.address).request(Login("alice")) == OK
    alice.close()


def test_a_node_stalled_past_its_ttl_loses_the_names_taken_meanwhile_and_keeps_the_others(nodes, logged_in, peer_at):
    one, two = nodes(2)
    alice, carol = logged_in(one.address, "alice"), logged_in(one.address, "carol")
    dave, erin = logged_in(one.address, "dave"), logged_in(one.address, "erin")
    bob = logged_in(two.address, "bob")
    relayed = []

    def load():  # dave writes to erin on node one, before, during and after the stall
        for i in range(100_000):
            assert dave.request(SendTo("erin", f"{i}")) == OK
            assert erin.next_event() == Incoming("dave", f"{i}")
            relayed.append(i)

    loader = gevent.spawn(load)
    try:
        eventually(lambda: len(relayed) > 100)
        one.proc.send_signal(signal.SIGSTOP)
        impostor = peer_at(two.address)
        # Node one's lease lapses TTL seconds after its last heartbeat: then two gives alice out.
        eventually(lambda: impostor.request(Login("alice")) == OK, timeout=TTL * 3, interval=0.2)
        one.proc.send_signal(signal.SIGCONT)
        one.wait_for_log("lease lapsed", timeout=TTL * 2)
        alice.assert_closed()  # one name, one holder: node one let its alice go
        one.wait_for_log("alice was taken on another node")
        before = len(relayed)
        eventually(lambda: len(relayed) > before + 100)  # the names nobody took stay, and chat
    finally:
        loader.kill()
    for name, sender in (("carol", carol), ("bob", bob)):
        assert sender.request(SendTo("alice", "for the one alice")) == OK
        assert impostor.next_event() == Incoming(name, "for the one alice")
    expected = UserList(("alice", "bob", "carol", "dave", "erin"))
    assert carol.request(ListUsers()) == expected and bob.request(ListUsers()) == expected
    assert_clean_log(one.log_text())


class _LeaseScripts:
    """The directory's beat and claim as Redis runs them (scripts._BEAT, _CLAIM), for one node,
    each taking a round trip's while: a claim under another lease than the node's is refused
    (-2), and a beat with another lease than the one held gets a new one."""

    def __init__(self):
        self.lease = b""  # as the node's key holds it
        self.leases_given = 0

    def beat(self, node_id, new_epoch, recovery_ms, ttl_seconds, lease, new_lease):
        gevent.sleep(0.01)
        if lease != self.lease:
            self.lease = new_lease.encode()
            self.leases_given += 1
        return b"epoch", self.lease, 0

    def claim(self, name, skeleton, node_id, lease, epoch, again, shared):
        gevent.sleep(0.01)
        return 1 if lease == self.lease else -2


def test_claims_refused_together_bring_one_beat_whose_lease_holds(caplog):
    """In-process, with the scripts' rules stood in for: twenty claims refused at once under a
    lapsed lease (as a burst of logins finds it) bring one new lease, not twenty beats that
    each take one and undo the one before."""
    directory = RedisDirectory("redis://127.0.0.1:1/0", ttl=TTL)  # (Redis itself is never asked)
    scripts = directory._heart = directory._scripts = _LeaseScripts()
    directory._epoch, directory._lease = b"epoch", b"lapsed"
    scripts.lease = b"held by nobody"
    claims = [gevent.spawn(directory.claim, f"user{n}", ENDED) for n in range(20)]
    gevent.joinall(claims, timeout=WAIT, raise_error=True)
    assert [claim.value for claim in claims] == [False] * 20
    eventually(lambda: directory.claim("later", ENDED), what="a claim under the new lease")
    assert scripts.leases_given == 1 and caplog.text.count("lease lapsed") == 1
    assert directory._beat() == 0 and directory.claim("after", ENDED)  # (the next beat keeps it)
    assert caplog.text.count("lease lapsed") == 1


def test_logins_refused_together_after_a_lapse_bring_one_new_lease_that_holds(server_process, tmp_path, peer_at):
    redis_process = RedisProcess(tmp_path)
    try:
        node = server_process("--redis", redis_process.url, "--node-ttl", str(TTL))
        db = redis.Redis.from_url(redis_process.url)
        [key] = db.keys(NODE + "*")
        # Redis was new: the node began its epoch and waited out half a TTL before serving.
        # Its lease is refreshed as it starts to, not only a third of a TTL later.
        assert db.pttl(key) > TTL * 1000 * 2 / 3
        # The lease lapses (the key gone, as after a stall past the TTL), and a burst of logins
        # finds it so together: each is refused or taken, and one new lease comes of it.
        db.delete(key)
        peers = [peer_at(node.address) for _ in range(20)]
        logins = [gevent.spawn(peer.request, Login(f"user{n}")) for n, peer in enumerate(peers)]
        gevent.joinall(logins, timeout=WAIT, raise_error=True)
        assert all(login.value in (OK, FAILURE) for login in logins)
        eventually(lambda: peer_at(node.address).request(Login("later")) == OK, what="a login under the new lease")
        node.wait_for_log("lease lapsed")
        # The next heartbeat keeps the lease, and the names taken under it.
        eventually(_refreshed(db, key), timeout=TTL, what="the next heartbeat")
        assert node.log_text().count("lease lapsed") == 1
        assert "later" in peer_at(node.address).request(ListUsers()).names
        db.close()
    finally:
        redis_process.close()


def test_a_node_started_beside_the_one_that_began_the_epoch_waits_out_its_recovery(server_process, tmp_path):
    """Two nodes start together on a new Redis: one begins the epoch, and for half a TTL no
    name is taken (the nodes may be registering their users again). The other must not serve
    meanwhile: it refused every login as unavailable till then (a cluster started at once by
    its service manager, its first users refused)."""
    redis_process = RedisProcess(tmp_path)
    starting = [gevent.spawn(server_process, "--redis", redis_process.url, "--node-ttl", str(TTL)) for _ in range(2)]
    try:
        (first,) = gevent.wait(starting, count=1, timeout=WAIT * 2)
        peer = hello_peer(first.value.address, 2)  # (a client that is told why)
        assert peer.request(Login("early")) == OK
        peer.close()
    finally:
        # (Both started, whatever happened, so that server_process stops both.)
        gevent.joinall(starting, timeout=WAIT * 2, raise_error=True)
        redis_process.close()


def _refreshed(db, key):
    """A check that holds once key's time to live has grown between two looks (a heartbeat)."""
    last = [db.pttl(key)]

    def grew() -> bool:
        before, last[0] = last[0], db.pttl(key)
        return last[0] > before

    return grew


def test_redis_down_then_back(nodes, redis_server, logged_in, peer_at):
    one, two = nodes(2)
    alice, bob = logged_in(one.address, "alice"), logged_in(one.address, "bob")
    carol = logged_in(two.address, "carol")
    redis_server.stop()
    # While Redis is away: what needs it fails, local messages still flow, nothing breaks.
    assert peer_at(one.address).request(Login("dave")) == FAILURE
    assert alice.request(ListUsers()) == FAILURE
    assert alice.request(SendTo("carol", "across")) == FAILURE
    assert alice.request(SendTo("bob", "local")) == OK
    assert bob.next_event() == Incoming("alice", "local")
    redis_server.start()  # empty: it lost every key

    def recovered():
        return alice.request(ListUsers()) == UserList(("alice", "bob", "carol"))

    eventually(recovered, timeout=TTL + 5)
    eventually(lambda: alice.request(SendTo("carol", "back")) == OK, timeout=WAIT)
    assert carol.next_event() == Incoming("alice", "back")
    dave = peer_at(one.address)
    eventually(lambda: dave.request(Login("dave")) == OK, timeout=TTL)  # once the recovery is over
    for node in (one, two):
        log = node.log_text()
        assert log.count("Redis unreachable") == 1
        assert_clean_log(log)


def test_thousands_of_messages_across_nodes_arrive_once_and_in_order(nodes, logged_in):
    one, two = nodes(2)
    pairs = 10
    per_sender = 300
    senders = [logged_in(one.address, f"s{i}") for i in range(pairs)]
    receivers = [logged_in(two.address, f"r{i}") for i in range(pairs)]
    # Each receiver also hears from every sender, so streams interleave at every inbox.
    expected = {}

    def send_all(i, peer):
        for seq in range(per_sender):
            peer.send(SendTo(f"r{(i + seq) % pairs}", f"{i}:{seq}"))
        return [peer.next_event() for _ in range(per_sender)]

    workers = [gevent.spawn(send_all, i, peer) for i, peer in enumerate(senders)]
    for i in range(pairs):
        for seq in range(per_sender):
            expected.setdefault((f"s{i}", f"r{(i + seq) % pairs}"), []).append(f"{i}:{seq}")
    received = {}
    for receiver_index, receiver in enumerate(receivers):
        count = sum(len(v) for (_, r), v in expected.items() if r == f"r{receiver_index}")
        for _ in range(count):
            event = receiver.next_event()
            received.setdefault((event.sender, f"r{receiver_index}"), []).append(event.text)
    gevent.joinall(workers, timeout=30, raise_error=True)
    assert all(w.value == [OK] * per_sender for w in workers)
    assert received == expected


def test_reuse_port_lets_two_processes_serve_one_port_as_one_chat(server_process, redis_server, logged_in):
    first = server_process("--redis", redis_server.url, "--reuse-port")
    second = server_process("--redis", redis_server.url, "--reuse-port", "--port", str(first.port))
    assert second.port == first.port
    peers = [logged_in(first.address, f"u{i:02d}") for i in range(20)]
    assert peers[0].request(ListUsers()) == UserList(tuple(f"u{i:02d}" for i in range(20)))
    for i in range(1, 20):
        assert peers[i].request(SendTo("u00", str(i))) == OK
    assert sorted(int(peers[0].next_event().text) for _ in range(19)) == list(range(1, 20))
    assert "connect 127.0.0.1:" in first.log_text() and "connect 127.0.0.1:" in second.log_text()


# --- Accounts, offline messages and history, shared through Redis ------------------------------


def hello(peer):
    assert peer.request(Hello(1)) == OK
    return peer


def test_an_account_made_on_one_node_logs_in_on_another(nodes, peer_at):
    one, two = nodes(2)
    alice = hello(peer_at(one.address))
    assert alice.request(Register("alice", "pw")) == OK
    assert hello(peer_at(two.address)).request(Register("alice", "other")) == FAILURE  # taken cluster-wide
    alice.close()
    again = hello(peer_at(two.address))
    eventually(lambda: again.request(Login("alice")) == Response(Status.REGISTERED))
    assert again.request(Authenticate("alice", "wrong")) == FAILURE
    assert again.request(Authenticate("alice", "pw")) == OK


def test_a_session_token_made_on_one_node_logs_in_on_another_until_logout(nodes, peer_at):
    one, two = nodes(2)
    alice = peer_at(one.address)
    assert alice.request(Hello(2)) == OK and alice.request(Register("alice", "pw")) == OK
    token = alice.request(TokenRequest()).token
    alice.close()
    again = peer_at(two.address)
    assert again.request(Hello(2)) == OK
    eventually(lambda: again.request(Resume("alice", token)) == OK)
    assert again.request(Logout()) == OK
    assert again.request(Resume("alice", token)) == failure(Reason.INVALID_TOKEN)


def test_a_message_to_another_node_then_a_logout_at_once_is_kept_in_the_history(nodes, peer_at):
    """The LOGOUT is answered while the message is on its way: it is recorded as it was sent."""
    one, two = nodes(2)
    bob = hello_peer(two.address, 1, "bob", "pw")
    alice = hello_peer(one.address, 1, "alice", "pw")
    eventually(lambda: alice.request(SendTo("bob", "warm")) == OK)  # (the nodes know each other)
    alice.send(SendTo("bob", "and bye"), Logout())
    assert [alice.next_event(), alice.next_event()] == [OK, OK]
    assert [bob.next_event(), bob.next_event()] == [Incoming("alice", "warm"), Incoming("alice", "and bye")]
    page = eventually(lambda: (p := bob.request(HistoryRequest("alice", 10))) and len(p.entries) == 2 and p)
    assert [entry.text for entry in page.entries] == ["warm", "and bye"]
    alice.close()
    bob.close()
    assert_clean_log(one.log_text())


def test_a_watcher_on_one_node_sees_logins_and_logouts_on_another(server_process, tmp_path, peer_at, logged_in):
    # On one Redis only: on a Redis Cluster the watch reads the same names() that LIST does.
    redis = RedisProcess(tmp_path)
    one, two = (server_process("--redis", redis.url, "--node-ttl", str(TTL)) for _ in range(2))
    watcher = peer_at(two.address)
    assert watcher.request(Hello(2)) == OK
    assert watcher.request(Watch(True)) == OK and watcher.next_event() == Presence(())
    alice = logged_in(one.address, "alice")
    assert watcher.next_event() == Presence((("alice", True),))
    alice.close()
    assert watcher.next_event() == Presence((("alice", False),))
    for node in (one, two):
        node.stop()
    redis.close()


def test_a_message_kept_by_one_node_is_delivered_by_another(nodes, peer_at):
    one, two = nodes(2)
    alice = hello(peer_at(one.address))
    assert alice.request(Register("alice", "pw")) == OK
    alice.close()
    bob = hello(peer_at(one.address))
    assert bob.request(Register("bob", "pw")) == OK
    eventually(lambda: bob.request(SendTo("alice", "kept for you")) == Response(Status.STORED))
    again = hello(peer_at(two.address))
    assert again.request(Authenticate("alice", "pw")) == OK
    stored = again.next_event()
    assert (stored.sender, stored.text) == ("bob", "kept for you")
    page = again.request(HistoryRequest("bob", 10))
    assert [(entry.sent, entry.text) for entry in page.entries] == [(False, "kept for you")]


def test_a_name_registered_anew_sees_nothing_of_its_old_conversations(nodes, peer_at, logged_in):
    one, two = nodes(2)
    bob = hello(peer_at(one.address))
    assert bob.request(Register("bob", "pw")) == OK
    carol = logged_in(two.address, "carol")  # not registered
    assert carol.request(SendTo("bob", "only bob may read this later")) == OK
    assert bob.next_event() == Incoming("carol", "only bob may read this later")
    carol.close()
    eventually(lambda: bob.request(HistoryRequest("carol", 10)).entries != ())
    mallory = hello(peer_at(two.address))
    eventually(lambda: mallory.request(Register("carol", "mine")) == OK)  # once carol's logout is known
    assert mallory.request(HistoryRequest("bob", 10)).entries == ()


def test_one_sender_fills_at_most_its_share_of_a_mailbox_in_redis(server_process, redis_server, peer_at):
    node = server_process("--redis", redis_server.url, "--node-ttl", str(TTL), "--mailbox-share", "0.01")
    away = hello(peer_at(node.address))
    assert away.request(Register("away", "pw")) == OK
    away.close()
    stranger, friend = hello(peer_at(node.address)), hello(peer_at(node.address))
    stranger.login("stranger")
    friend.login("friend")
    eventually(lambda: stranger.request(SendTo("away", "first")) == Response(Status.STORED))
    replies = [stranger.request(SendTo("away", f"spam {i}")) for i in range(12)]
    assert replies == [Response(Status.STORED)] * 9 + [FAILURE] * 3  # a hundredth of 1,000, "first" included
    assert friend.request(SendTo("away", "still gets through")) == Response(Status.STORED)


def test_health_is_503_while_redis_is_unreachable(server_process, redis_server, logged_in):
    metrics_port = free_port()
    node = server_process("--redis", redis_server.url, "--node-ttl", str(TTL), "--metrics", f"127.0.0.1:{metrics_port}")
    health = f"http://127.0.0.1:{metrics_port}/health"
    assert http_status(health) == 200
    alice = logged_in(node.address, "alice")
    redis_server.stop()
    alice.request(ListUsers())  # needs Redis: the node learns it is gone
    eventually(lambda: http_status(health) == 503)
    redis_server.start()
    eventually(lambda: http_status(health) == 200, timeout=3 * TTL)


def http_status(url) -> int:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_name_is_never_held_twice_across_a_redis_restart(nodes, redis_server, logged_in, peer_at):
    one, two = nodes(2)
    alice = logged_in(one.address, "alice")
    impostor = peer_at(two.address)
    for trial in range(3):
        redis_server.stop()
        redis_server.start()  # empty: it lost every key
        gevent.sleep(0.01)
        # Ten milliseconds after Redis is back, before node one has registered alice again.
        assert impostor.request(Login("alice")) == FAILURE, f"trial {trial}"
        # Later too, once the nodes have caught up: alice is still held, by node one.
        eventually(lambda: impostor.request(Login("carol")) == OK and impostor.request(Logout()) == OK, timeout=2 * TTL)
        assert impostor.request(Login("alice")) == FAILURE
        assert impostor.request(ListUsers()) == UserList(("alice",))
        assert alice.request(ListUsers()) == UserList(("alice",))
    messenger = logged_in(two.address, "bob")
    assert messenger.request(SendTo("alice", "still you?")) == OK
    assert alice.next_event() == Incoming("bob", "still you?")


def test_a_paused_redis_fails_fast_and_no_failure_is_delivered(nodes, redis_server, logged_in):
    one, two = nodes(2)
    alice, bob = logged_in(one.address, "alice"), logged_in(one.address, "bob")
    carol = logged_in(two.address, "carol")
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        first = gevent.spawn(alice.request, SendTo("carol", "sent while Redis was paused"))
        reply = first.get(timeout=15)  # the socket timeout, then the settling: FAILURE
        assert reply == FAILURE
        with gevent.Timeout(0.5):  # the circuit is open: the next one fails at once
            assert bob.request(SendTo("carol", "fails fast")) == FAILURE
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    # Redis now runs what was waiting in its socket: too late, it publishes nothing.
    eventually(lambda: bob.request(SendTo("carol", "after")) == OK, timeout=WAIT)
    assert carol.next_event() == Incoming("bob", "after")  # and nothing answered FAILURE came before it


def test_a_redis_older_than_7_is_refused_with_a_clear_message(fake_server):
    server = fake_server(old_redis)
    result = gevent.subprocess.run(
        [*SERVER_COMMAND, "--port", "0", "--redis", f"redis://127.0.0.1:{server.server_port}/0"],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )
    assert result.returncode == 1
    assert "Redis 6.2.14" in result.stderr and "needs Redis 7.0 or newer" in result.stderr
    assert "Traceback" not in result.stderr


def old_redis(sock):
    """Enough of a Redis 6.2 to answer redis-py's handshake and INFO (RESP3)."""
    info = b"# Server\r\nredis_version:6.2.14\r\n# Cluster\r\ncluster_enabled:0\r\n"
    with sock, sock.makefile("rb") as requests:
        while line := requests.readline():
            command = [requests.read(int(requests.readline()[1:])) + requests.read(2) for _ in range(int(line[1:]))]
            name = command[0].strip().upper()
            if name == b"HELLO":
                sock.sendall(b"%1\r\n+proto\r\n:3\r\n")
            elif name == b"INFO":
                sock.sendall(b"$%d\r\n%s\r\n" % (len(info), info))
            else:
                sock.sendall(b"+OK\r\n")


# --- Redis Cluster only -----------------------------------------------------------------


def test_on_a_redis_cluster_the_store_spreads_over_the_masters_and_the_directory_keeps_one_slot(
    server_process, redis_cluster, peer_at
):
    redis_cluster.reset()
    one = server_process("--redis", redis_cluster.url, "--node-ttl", str(TTL))
    two = server_process("--redis", redis_cluster.masters[0].url, "--node-ttl", str(TTL))  # any master will do
    users = [f"user{i}" for i in range(12)]
    for name in users:
        peer = hello(peer_at(one.address))
        assert peer.request(Register(name, "pw")) == OK
        peer.close()
    writer = hello(peer_at(two.address))
    assert writer.request(Register("writer", "pw")) == OK
    for name in users:  # all offline: kept for them, and recorded in each conversation's history
        eventually(lambda name=name: writer.request(SendTo(name, f"hello {name}")) == Response(Status.STORED))
    for i in range(25):
        assert writer.request(SendTo("user0", f"more {i}")) == Response(Status.STORED)
    # Accounts live in one hash; offline lists and histories are keys of their own, on every master.
    per_master = [master.client().keys("chatroom:*") for master in redis_cluster.masters]
    assert all(per_master), [len(keys) for keys in per_master]
    holds_directory = [bool(master.client().keys("{chatroom}:*")) for master in redis_cluster.masters]
    assert holds_directory == [master is redis_cluster.directory_master for master in redis_cluster.masters]
    # History pages back through one conversation, whichever node asks.
    reader = hello(peer_at(one.address))
    assert reader.request(Authenticate("user0", "pw")) == OK
    stored = [reader.next_event().text for _ in range(26)]
    assert stored == ["hello user0"] + [f"more {i}" for i in range(25)]
    newest = reader.request(HistoryRequest("writer", 10))
    older = reader.request(HistoryRequest("writer", 10, newest.entries[0].id))
    oldest = reader.request(HistoryRequest("writer", 10, older.entries[0].id))
    texts = [entry.text for page in (oldest, older, newest) for entry in page.entries]
    assert texts == stored


@pytest.fixture
def replicated_cluster(tmp_path):
    """A Redis Cluster of three whose directory's master has a replica: (cluster, replica)."""
    cluster = RedisClusterProcess(tmp_path / "cluster")
    try:
        yield cluster, cluster.add_replica(tmp_path / "replica")
    finally:
        cluster.close()


def test_the_nodes_follow_the_directory_to_a_promoted_replica(replicated_cluster, server_process, logged_in, peer_at):
    cluster, replica = replicated_cluster
    one = server_process("--redis", cluster.url, "--node-ttl", str(TTL))
    two = server_process("--redis", cluster.url, "--node-ttl", str(TTL))
    alice, carol = logged_in(one.address, "alice"), logged_in(two.address, "carol")
    cluster.promote(replica)  # the replica takes over, the master steps down
    # Both nodes move to the new master: names, lists and messages carry on.
    eventually(lambda: alice.request(SendTo("carol", "after the failover")) == OK, timeout=WAIT)
    assert carol.next_event() == Incoming("alice", "after the failover")
    assert carol.request(SendTo("alice", "both ways")) == OK
    assert alice.next_event() == Incoming("carol", "both ways")
    assert peer_at(two.address).request(Login("alice")) == FAILURE  # still held, by node one
    assert logged_in(two.address, "dave").request(ListUsers()) == UserList(("alice", "carol", "dave"))
    for node in (one, two):
        log = node.log_text()
        assert log.count("the directory's slot is served by") == 2  # at the start, and once moved
        assert_clean_log(log)
        assert "Redis unreachable" not in log


def test_the_nodes_find_the_directory_after_its_master_crashed_and_a_replica_took_over(
    replicated_cluster, server_process, logged_in, peer_at
):
    cluster, replica = replicated_cluster
    # Given the very master that will crash: the nodes must ask the others they learnt of.
    crashing = cluster.directory_master
    one = server_process("--redis", crashing.url, "--node-ttl", str(TTL))
    two = server_process("--redis", crashing.url, "--node-ttl", str(TTL))
    alice, carol = logged_in(one.address, "alice"), logged_in(two.address, "carol")
    crashing.proc.kill()
    with replica.client() as client:
        # What the cluster does by itself once cluster-node-timeout has passed, at once.
        client.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
        eventually(lambda: client.info("replication")["role"] == "master")
    eventually(lambda: alice.request(SendTo("carol", "after the crash")) == OK, timeout=2 * TTL)
    assert carol.next_event() == Incoming("alice", "after the crash")
    assert peer_at(two.address).request(Login("alice")) == FAILURE  # still held, by node one
    # New accounts still reach both nodes, through a node that is alive, without polling.
    live = [server for server in cluster.masters + cluster.replicas if server is not crashing]
    for server in live:
        with server.client() as client:
            client.config_resetstat()
    dave = hello(peer_at(two.address))
    assert dave.request(Register("dave", "pw")) == OK
    dave.close()  # offline: what is sent to him now is kept
    sender = hello(peer_at(one.address))
    assert sender.request(Register("erin", "pw")) == OK
    eventually(lambda: sender.request(SendTo("dave", "for later")) == Response(Status.STORED))
    gevent.sleep(2.0)  # a node that had to poll for new names would do so a few times meanwhile

    def hkeys_calls(server):
        with server.client() as client:
            return client.info("commandstats").get("cmdstat_hkeys", {}).get("calls", 0)

    # At most one reload of the names per node: the one after its subscription took.
    assert sum(hkeys_calls(server) for server in live) <= 2
    for node in (one, two):
        assert_clean_log(node.log_text())


def test_a_claim_the_replica_never_got_is_made_again_after_the_failover(
    replicated_cluster, server_process, logged_in, peer_at
):
    cluster, replica = replicated_cluster
    one = server_process("--redis", cluster.url, "--node-ttl", str(TTL))
    two = server_process("--redis", cluster.url, "--node-ttl", str(TTL))
    alice = logged_in(one.address, "alice")
    with replica.client() as client:
        # Cut the replica off its master for good (it can no longer log in to it), so that
        # a claim made now reaches the master only.
        client.config_set("masteruser", "nobody")
        client.config_set("masterauth", "nothing")
        client.execute_command("CLIENT", "KILL", "TYPE", "master")
        eventually(lambda: client.info("replication")["master_link_status"] == "down")
        bob = logged_in(one.address, "bob")
        client.execute_command("READONLY")  # let this connection read the slot's keys
        assert client.hget("{chatroom}:users", "bob") is None  # the replica never heard of bob
        cluster.directory_master.proc.kill()
        client.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
        eventually(lambda: client.info("replication")["role"] == "master")
    # The nodes move, and node one registers its users again: bob is held, by node one.
    eventually(lambda: alice.request(ListUsers()) == UserList(("alice", "bob")), timeout=2 * TTL)
    assert peer_at(two.address).request(Login("bob")) == FAILURE
    assert logged_in(two.address, "carol").request(SendTo("bob", "still you?")) == OK
    assert bob.next_event() == Incoming("carol", "still you?")


# --- Rooms across nodes ----------------------------------------------------------------------------


def room_member(address, name, room="#r"):
    peer = Peer(address)
    assert peer.reply(Hello(3)) == OK and peer.reply(Login(name)) == OK and peer.reply(Join(room)) == OK
    return peer


def test_a_rooms_members_on_two_nodes_get_its_messages_in_one_order(nodes):
    one, two = nodes(2)
    peers = [room_member((one, two)[n % 2].address, f"m{n}") for n in range(6)]
    per_sender = 100

    def send(peer, tag):
        for i in range(per_sender):
            peer.send(SendTo("#r", f"{tag} {i}"))

    gevent.joinall([gevent.spawn(send, peer, f"s{n}") for n, peer in enumerate(peers[:4])], timeout=WAIT)
    orders = []
    for peer in peers:
        got = []
        with gevent.Timeout(WAIT * 3):
            while len(got) < 4 * per_sender:
                event = peer.next_push()
                if isinstance(event, RoomMessage):
                    got.append((event.id, event.text))
        assert [message_id for message_id, _ in got] == sorted(message_id for message_id, _ in got)
        orders.append(got)
    assert all(order == orders[0] for order in orders)
    assert sorted(message_id for message_id, _ in orders[0]) == list(range(1, 4 * per_sender + 1))
    for peer in peers:
        peer.close()


def test_room_rules_hold_across_nodes(nodes):
    one, two = nodes(2)
    owner = hello_peer(one.address, 3, "owner", "pw")
    assert owner.reply(Join("#club")) == OK
    guest = room_member(two.address, "guest", "#club")
    wait_for_push(owner, lambda e: isinstance(e, RoomEvent) and e.actor == "guest")
    witness = room_member(two.address, "witness", "#club")  # on the guest's node
    assert guest.reply(ListMembers("#club")) == MemberList(
        "#club",
        "",
        (("guest", MemberFlag.ONLINE), ("owner", MemberFlag.ONLINE | MemberFlag.OWNER), ("witness", MemberFlag.ONLINE)),
    )
    assert guest.reply(SetTopic("#club", "mine")) == failure(Reason.NOT_OWNER)
    assert owner.reply(Kick("#club", "guest")) == OK
    wait_for_push(guest, lambda e: isinstance(e, RoomEvent) and e.kind is EventKind.REMOVED)
    assert owner.reply(SendTo("#club", "after the kick")) == OK
    # The witness has it: the guest's node has handed it out, and not to the guest.
    wait_for_push(witness, lambda e: isinstance(e, RoomMessage) and e.text == "after the kick")
    assert not any(isinstance(e, RoomMessage) for e in drain(guest))
    assert guest.reply(SendTo("#club", "back?")) == failure(Reason.NOT_A_MEMBER)
    late = hello_peer(two.address, 3, "c\u043ebble")
    assert late.reply(Join("#\u0441lub")) == failure(Reason.LOOKS_LIKE, "#club")  # Cyrillic с
    assert late.reply(Join("#CLUB")) == failure(Reason.LOOKS_LIKE, "#club")  # (and case)
    for peer in (owner, guest, witness, late):
        peer.close()


def shared_rooms(redis_client, mailboxes: dict):
    """(rooms, directory): a node's SharedRooms, in process over a real Redis, its directory
    stood in for (its users here: mailboxes; its inbox: directory.on_room_envelope)."""
    local = SimpleNamespace(find=mailboxes.get, changes=0)
    directory = SimpleNamespace(
        redis=redis_client,
        redis_call=lambda function, *args, **kwargs: function(*args, **kwargs),
        users_key=USERS,
        node_prefix=NODE,
        inbox_prefix=INBOX,
        local=local,
        on_room_envelope=None,
    )
    rooms = SharedRooms(directory)
    rooms.start()
    return rooms, directory


def test_one_leaving_is_handed_the_event_of_it_at_its_own_node_whenever_its_inbox_brings_it(redis_client):
    """In-process, over a real Redis, the node's inbox stood in for: the event of a removal (or
    a part), told before the leave, reaches the node's members through its inbox, and may come
    after the leave itself: the member who left must still be handed it there (it was forgotten
    at the leave, and a member removed by someone at its own node never learnt it)."""
    handed: dict[str, list[bytes]] = {"owner": [], "near": []}
    sinks = {name: SimpleNamespace(offer=lambda frame, got=got: not got.append(frame)) for name, got in handed.items()}
    mailboxes = {name: SimpleNamespace(room_sink=lambda sink=sink: sink) for name, sink in sinks.items()}
    rooms, directory = shared_rooms(redis_client, mailboxes)
    assert rooms.join("#club", "owner", True).new and rooms.join("#club", "near", False).new
    removed = encode(RoomEvent("#club", EventKind.REMOVED, "owner", "near"))
    rooms.leave(rooms.get("#club"), "near")  # (the rules told the event first: it is on its way)
    directory.on_room_envelope("#club", removed)  # (the inbox brings it now)
    assert handed == {"owner": [removed], "near": [removed]}
    later = encode(RoomEvent("#club", EventKind.TOPIC, "owner", "after"))
    directory.on_room_envelope("#club", later)
    assert handed == {"owner": [removed, later], "near": [removed]}  # (forgotten once told)


def test_a_look_alike_key_left_by_a_room_that_is_gone_takes_no_name(redis_client):
    """(A room made before its key was made as it is now, which left a key of the old kind
    when it went.) The key names a room that is no more: a new room takes it over."""
    rooms, _ = shared_rooms(redis_client, {})
    key = look_alike_key("#Team")
    redis_client.hset(SKELETONS, key, "#TeaM")  # (no such room)
    joined = rooms.join("#Team", "ann", False)
    assert joined.new and joined.room is not None and joined.room.name == "#Team"
    assert redis_client.hget(SKELETONS, key) == b"#Team"
    assert rooms.join("#team", "bob", False).reason is Reason.LOOKS_LIKE  # (and it tells rooms apart)


def test_a_guest_who_registers_its_name_stays_a_member_across_nodes(nodes):
    one, two = nodes(2)
    owner = hello_peer(one.address, 3, "owner", "pw")
    assert owner.reply(Join("#club")) == OK
    guest = room_member(two.address, "guest", "#club")
    assert guest.reply(Join("#mine")) == OK  # (a guest's room: no owner)
    assert guest.reply(Register("guest", "pw")) == OK  # (#mine is its first registered member's now)
    carl = room_member(two.address, "carl", "#open")
    assert owner.reply(Join("#open")) == OK  # (and #open the first registered member's, from the other node)
    assert carl.reply(ListMembers("#open")) == MemberList(
        "#open", "", (("carl", MemberFlag.ONLINE), ("owner", MemberFlag.ONLINE | MemberFlag.OWNER))
    )
    carl.close()
    assert guest.reply(ListMembers("#mine")) == MemberList(
        "#mine", "", (("guest", MemberFlag.ONLINE | MemberFlag.OWNER),)
    )
    assert guest.reply(Logout()) == OK  # (not out of the room at its logout: registered now)
    assert owner.reply(ListMembers("#club")) == MemberList(
        "#club", "", (("guest", MemberFlag(0)), ("owner", MemberFlag.ONLINE | MemberFlag.OWNER))
    )
    assert owner.reply(GiveRoom("#club", "guest")) == OK  # (only to a registered member)
    for peer in (owner, guest):
        peer.close()


def test_a_rooms_history_is_kept_across_nodes_in_the_order_of_its_ids(nodes):
    """Recorded behind the messages (the sender does not wait on Redis for it), and read at
    any node: every message, in order."""
    one, two = nodes(2)
    writer = hello_peer(one.address, 3, "writer", "pw")
    reader = hello_peer(two.address, 3, "reader", "pw")
    assert writer.reply(Join("#log")) == OK and reader.reply(Join("#log")) == OK
    for i in range(30):
        assert writer.reply(SendTo("#log", f"line {i}")) == OK
    page = eventually(lambda: (p := reader.reply(HistoryRequest("#log", 50))) and len(p.entries) == 30 and p)
    assert [entry.text for entry in page.entries] == [f"line {i}" for i in range(30)]
    assert [entry.id for entry in page.entries] == list(range(1, 31))
    for peer in (writer, reader):
        peer.close()


def test_a_member_who_comes_back_to_another_node_is_handed_the_rooms_messages_there(nodes):
    """A node keeps its members' sinks per room: one who logs out, and in again elsewhere, is
    handed the room's messages where they are now, and only there."""
    one, two = nodes(2)
    speaker = room_member(one.address, "speaker")
    member = hello_peer(two.address, 3, "member", "pw")
    assert member.reply(Join("#r")) == OK
    assert speaker.reply(SendTo("#r", "first")) == OK
    wait_for_push(member, lambda e: isinstance(e, RoomMessage) and e.text == "first")
    assert member.reply(Logout()) == OK
    member.close()
    again = Peer(one.address)
    assert again.reply(Hello(3)) == OK and again.reply(Authenticate("member", "pw")) == OK
    assert speaker.reply(SendTo("#r", "second")) == OK
    wait_for_push(again, lambda e: isinstance(e, RoomMessage) and e.text == "second")
    for peer in (speaker, again):
        peer.close()


def test_a_rooms_messages_fail_while_redis_is_away_and_flow_once_it_is_back(server_process, tmp_path):
    """Redis keeps its data across the restart (an append-only file), not its scripts: the
    nodes load them again, and the room goes on."""
    redis_server = RedisProcess(tmp_path, persistent=True)
    peers = []
    try:
        one, two = [server_process("--redis", redis_server.url, "--node-ttl", str(TTL)) for _ in range(2)]
        here, there = peers = [room_member(one.address, "here"), room_member(two.address, "there")]
        assert here.reply(SendTo("#r", "before")) == OK
        wait_for_push(there, lambda e: isinstance(e, RoomMessage) and e.text == "before")
        redis_server.stop()
        assert here.reply(SendTo("#r", "away")) == failure(Reason.UNAVAILABLE)
        redis_server.start()

        def sent_back() -> bool:
            try:
                return here.reply(SendTo("#r", "back")) == OK
            except gevent.Timeout:  # (answered late while Redis came back: the next try reads it)
                return False

        eventually(sent_back, timeout=TTL + 15)
        wait_for_push(there, lambda e: isinstance(e, RoomMessage) and e.text == "back")
        for node in (one, two):
            assert_clean_log(node.log_text())
    finally:
        for peer in peers:
            peer.close()
        redis_server.close()


def wait_for_push(peer, wanted) -> None:
    """Read what the peer is pushed until one is wanted (bounded)."""
    with gevent.Timeout(WAIT):
        while not wanted(peer.next_push()):
            pass


def drain(peer) -> list:
    """What the peer was pushed until now (a LIST's reply marks now)."""
    peer.reply(ListUsers())
    pushed, peer.pushed = peer.pushed, []
    return pushed


def invited_to(room, owner_at, guest_at, guest):
    """(The owner of room, invite-only, at owner_at; guest, logged in at guest_at, invited to it.)"""
    owner = hello_peer(owner_at, 3, "owner", "pw")
    assert owner.reply(Join(room)) == OK and owner.reply(SetInviteOnly(room, True)) == OK
    invited = hello_peer(guest_at, 3, guest)
    assert owner.reply(Invite(room, guest)) == OK
    return owner, invited


def test_a_name_taken_again_after_its_node_died_inherits_none_of_its_rooms(nodes):
    one, two = nodes(2)
    owner, invited = invited_to("#secret", two.address, one.address, "bob")
    wait_for_push(invited, lambda e: isinstance(e, RoomEvent) and e.kind is EventKind.INVITED)  # across nodes
    assert invited.reply(Join("#secret")) == OK
    bob = invited
    one.signal(signal.SIGKILL)  # bob's logout never happens
    impostor = Peer(two.address)
    assert impostor.reply(Hello(3)) == OK
    eventually(lambda: impostor.reply(Login("bob")) == OK, timeout=TTL + 3)
    assert owner.reply(SendTo("#secret", "for members")) == OK
    # The owner has its copy: the impostor's node (the same) has handed it out, not to them.
    wait_for_push(owner, lambda e: isinstance(e, RoomMessage) and e.text == "for members")
    assert impostor.reply(SendTo("#secret", "hi")) == failure(Reason.NO_SUCH_ROOM)
    assert not any(isinstance(e, RoomMessage) for e in drain(impostor))
    for peer in (owner, bob, impostor):
        peer.close()


def test_a_guests_invitation_ends_at_its_logout_across_nodes(nodes):
    one, two = nodes(2)
    owner, carl = invited_to("#vip", one.address, two.address, "carl")
    assert carl.reply(Logout()) == OK
    taker = hello_peer(one.address, 3, "carl")  # (someone else, the name free again)
    assert taker.reply(Join("#vip")) == failure(Reason.INVITE_ONLY)
    for peer in (owner, carl, taker):
        peer.close()


def test_a_rooms_invitations_are_as_many_as_its_members_may_be(nodes):
    [node] = nodes(1, "--members-per-room", "2")
    owner = hello_peer(node.address, 3, "owner", "pw")
    assert owner.reply(Join("#r")) == OK
    assert owner.reply(Invite("#r", "made-up")) == OK and owner.reply(Invite("#r", "other")) == OK
    assert owner.reply(Invite("#r", "another")) == failure(Reason.ROOM_FULL, "2")
    assert owner.reply(Invite("#r", "other")) == OK  # (invited already)
    owner.close()


def test_a_direct_message_crosses_with_its_id_and_an_older_client_gets_it_without(nodes):
    one, two = nodes(2)
    alice = hello_peer(one.address, 3, "alice", "pw")
    bob = hello_peer(two.address, 3, "bob", "pw")
    old = hello_peer(two.address, 2, "old")
    for n in range(3):
        assert alice.reply(SendTo("bob", f"m{n}")) == OK
    assert alice.reply(SendTo("old", "hi")) == OK
    got = [bob.next_push() for _ in range(3)]
    assert all(isinstance(m, DirectMessage) for m in got) and [m.text for m in got] == ["m0", "m1", "m2"]
    assert [m.id for m in got] == sorted({m.id for m in got})
    assert old.next_push() == Incoming("alice", "hi")
    page = eventually(lambda: (p := bob.reply(HistoryRequest("alice", 10))) and len(p.entries) == 3 and p)
    assert [e.id for e in page.entries] == [m.id for m in got]
    assert [e.text for e in bob.reply(HistoryRequest("alice", 10, got[1].id)).entries] == ["m0"]
    for peer in (alice, bob, old):
        peer.close()


def test_search_in_cluster_mode_scans_ones_own_conversations(nodes):
    from chatroom.search_frames import Search

    one, two = nodes(2)
    alice = hello_peer(one.address, 3, "alice", "pw")
    bob = hello_peer(two.address, 3, "bob", "pw")
    assert alice.reply(Join("#team")) == OK and bob.reply(Join("#team")) == OK
    assert bob.reply(SendTo("alice", "the Blue key")) == OK
    assert bob.reply(SendTo("#team", "blue skies")) == OK
    assert bob.reply(SendTo("bob", "blue, to myself")) == OK  # not alice's
    found = eventually(lambda: (r := alice.reply(Search(10, 0, "", "blue"))) and len(r.found) == 2 and r)
    assert sorted(f.text for f in found.found) == ["blue skies", "the Blue key"]
    assert [f.text for f in alice.reply(Search(10, 0, "bob", "KEY")).found] == ["the Blue key"]
    for peer in (alice, bob):
        peer.close()


def test_devices_markers_unread_and_away_across_two_nodes(nodes):
    from chatroom.device_frames import (
        Away,
        EndSession,
        Mark,
        Marked,
        OwnMessage,
        PresenceState,
        PresenceStatus,
        SessionEnded,
        SessionFlag,
        SessionList,
        Sessions,
        Unread,
        UnreadCounts,
    )
    from tests.test_devices_live import device, direct_messages

    one, two = nodes(2, "--sessions-per-account", "2")
    laptop, phone = device(one.address, "alice"), device(two.address, "alice")  # one account, two nodes
    for node in (one, two):  # the limit counts the sessions of every node
        third = hello_peer(node.address, 4)
        assert third.reply(Authenticate("alice", "pw")) == failure(Reason.TOO_MANY_SESSIONS, "2")
        third.close()
    older = hello_peer(two.address, 3)
    assert older.reply(Authenticate("alice", "pw")) == failure(Reason.NAME_IN_USE)  # (one connection below v4)
    carol = device(two.address, "carol")
    bob = device(one.address, "bob")
    assert carol.reply(ListUsers()) == UserList(("alice", "bob", "carol"))  # once
    # Every message reaches every device, from either node, with one id.
    for sender in (carol, bob):
        assert sender.reply(SendTo("alice", "hi")) == OK
        [on_laptop], [on_phone] = direct_messages(laptop, 1), direct_messages(phone, 1)
        assert on_laptop.id == on_phone.id and on_laptop.text == on_phone.text == "hi"
    # What one device sends shows on the other as the user's own.
    assert laptop.reply(SendTo("carol", "from the laptop")) == OK
    [to_carol] = direct_messages(carol, 1)
    assert phone.pushes_of(OwnMessage, 1) == [OwnMessage("carol", to_carol.id, to_carol.time_ms, "from the laptop")]
    assert laptop.reply(Mark("carol", to_carol.id)) == OK
    assert phone.pushes_of(Marked, 1) == [Marked("carol", to_carol.id)]
    assert laptop.reply(Join("#team")) == OK and carol.reply(Join("#team")) == OK
    assert carol.reply(SendTo("#team", "to the room")) == OK
    for alices in (laptop, phone):
        wait_for_push(alices, lambda e: isinstance(e, RoomMessage) and e.text == "to the room")
    assert phone.reply(Watch(True)) == OK
    online = (PresenceState.ONLINE, "")
    assert phone.next_push() == PresenceStatus((("alice", *online), ("bob", *online), ("carol", *online)))
    assert carol.reply(Away(True, "lunch")) == OK
    with gevent.Timeout(WAIT):
        assert phone.next_push() == PresenceStatus((("carol", PresenceState.AWAY, "lunch"),))
    for text in ("one", "two"):
        assert carol.reply(SendTo("alice", text)) == OK
    direct_messages(laptop, 2)

    def unread():
        counts = phone.reply(Unread())
        assert isinstance(counts, UnreadCounts)
        return [(e.conversation, e.marker, e.count) for e in counts.entries]

    # (the sender's node writes the history behind the relay: the count follows within moments)
    expected = [("#team", 0, 1), ("bob", 0, 1), ("carol", to_carol.id, 2)]
    eventually(lambda: unread() == expected, what="what came after each marker")
    # Either device lists both, and may end the other.
    listed = phone.reply(Sessions())
    assert isinstance(listed, SessionList) and len(listed.sessions) == 2
    assert [entry.flags for entry in listed.sessions].count(SessionFlag.THIS) == 1
    assert laptop.reply(Sessions()).sessions == tuple(  # the same sessions, the other one flagged
        replace(entry, flags=SessionFlag.THIS ^ entry.flags) for entry in listed.sessions
    )
    [laptops] = [entry.number for entry in listed.sessions if not entry.flags]
    assert phone.reply(EndSession(laptops + 1)) == failure(Reason.NO_SUCH_SESSION)
    # Ending it leaves the user logged in at the other node, and reached there.
    assert phone.reply(EndSession(laptops)) == OK
    assert laptop.pushes_of(SessionEnded, 1) == [SessionEnded()]  # (told why, from the other node)
    laptop.assert_closed()
    eventually(lambda: len(phone.reply(Sessions()).sessions) == 1, what="one session left")
    assert carol.reply(ListUsers()) == UserList(("alice", "bob", "carol"))
    assert bob.reply(SendTo("alice", "still there?")) == OK
    assert [m.text for m in direct_messages(phone, 3)][-1] == "still there?"
    assert phone.reply(Logout()) == OK
    assert carol.reply(ListUsers()) == UserList(("bob", "carol"))
    for peer in (laptop, phone, older, carol, bob):
        peer.close()


def test_a_rooms_nodes_are_found_among_thousands_of_members_and_only_a_member_posts(redis_client):
    """The scripts read the members' holders a thousand at a time: a node is found whichever
    thousand its member is in, and counted once; a message from a non-member takes no id."""
    client = redis_client
    members = [f"m{n}" for n in range(2500)]
    client.zadd(ROOM + "#big:members", {name: n for n, name in enumerate(members)})
    holders = dict.fromkeys(members, "one:1")
    holders["m1500"] = "two:2"
    holders["m2499"] = "*three:3 one:1"
    del holders["m7"]  # (a member logged out)
    client.hset(USERS, mapping=holders)
    keys = [USERS, ROOM + "#big:members"]
    assert client.register_script(TELL)(keys=keys, args=[NODE, INBOX, b"x"]) == 3
    client.hdel(USERS, "m1500")
    assert client.register_script(TELL)(keys=keys, args=[NODE, INBOX, b"x"]) == 2
    post = client.register_script(POST)
    room = [ROOM + "#big:members", ROOM + "#big"]
    assert post(keys=[USERS, *room], args=[NODE, INBOX, "#big", "stranger", 1, b"hi"]) == [0]
    assert client.hget(ROOM + "#big", "last") is None
    posts = [NODE, INBOX, "#big", "m7", 1, b"hi", "#big", "stranger", 2, b"no", "#big", "m8", 3, b"yo"]
    assert post(keys=[USERS, *room, *room, *room], args=posts) == [1, 0, 2]


def test_a_rooms_message_is_kept_for_a_live_node_between_subscriptions_and_not_for_a_gone_one(redis_client):
    """Nobody subscribed takes it: a live node (its heartbeat key is there) reads it from its
    inbox's stream once it subscribes again; a gone node's stream does not grow."""
    client = redis_client
    client.zadd(ROOM + "#r:members", {"a": 1, "b": 2})
    client.hset(USERS, mapping={"a": "live:1", "b": "gone:2"})
    client.set(NODE + "live", "1")
    room = [ROOM + "#r:members", ROOM + "#r"]
    post = client.register_script(POST)
    assert post(keys=[USERS, *room], args=[NODE, INBOX, "#r", "a", 1, b"hi"]) == [1]
    tell = client.register_script(TELL)
    assert tell(keys=[USERS, ROOM + "#r:members"], args=[NODE, INBOX, b"event"]) == 2
    kept = [fields[b"b"] for _, fields in client.xrange(INBOX + "live")]
    assert len(kept) == 2 and kept[0].endswith(b"hi") and kept[1] == b"event"
    assert client.xlen(INBOX + "gone") == 0


def test_a_gone_nodes_inbox_is_deleted_when_a_node_starts_and_a_node_that_stops_deletes_its_own(redis_client):
    client = redis_client
    for node_id in ("crashed", "live", "stopping"):
        client.xadd(INBOX + node_id, {"b": b"batch"})
    client.set(NODE + "live", "lease")
    client.set(NODE + "stopping", "lease")
    client.hset(USERS, mapping={"a": "stopping:lease", "b": "live:lease"})
    scripts = Scripts(client)
    assert scripts.forget_gone_inboxes() == 1
    assert [client.exists(INBOX + node_id) for node_id in ("crashed", "live", "stopping")] == [0, 1, 1]
    scripts.release_all("stopping")
    assert [client.exists(INBOX + "stopping"), client.exists(NODE + "stopping")] == [0, 0]
    assert client.hgetall(USERS) == {b"b": b"live:lease"}
    assert client.exists(INBOX + "live") == 1


def test_room_messages_posted_together_go_in_one_round_trip_and_survive_a_forgotten_script(redis_client):
    client = redis_client
    round_trips = []

    def call(method, batch):
        round_trips.append(len(batch))
        return method(batch)

    # Each post: a counter's next value (x 100), plus its argument, plus the common one.
    lua = """
    local answers = {}
    for i = 2, #KEYS do
      answers[i - 1] = redis.call('INCR', KEYS[i]) * 100 + tonumber(ARGV[i]) + tonumber(ARGV[1])
    end
    return answers
    """
    script = client.register_script(lua)
    poster = Poster(lambda: script, call, ["{c}:unused"], [1000])
    posts = [gevent.spawn(poster.post, ["{c}:counter"], [n]) for n in range(20)]
    gevent.joinall(posts, timeout=WAIT, raise_error=True)
    assert [post.value for post in posts] == [1000 + 100 * (n + 1) + n for n in range(20)]
    assert round_trips == [20]
    client.script_flush()
    assert poster.post(["{c}:counter"], [0]) == 3100
    # A batch stops at a megabyte of posts (each node is handed it in one payload).
    large = [gevent.spawn(poster.post, ["{c}:counter"], [0], 600_000) for _ in range(3)]
    gevent.joinall(large, timeout=WAIT, raise_error=True)
    assert [post.value for post in large] == [3200, 3300, 3400]
    assert round_trips == [20, 1, 2, 1]


def test_a_historys_entries_queued_together_are_all_kept_in_order_and_expire(redis_server):
    """Recorded in one call per history (in chunks of RECORDS_PER_CALL): every entry of a burst
    larger than a chunk is kept, beside another history's, and the key carries its expiry."""
    store = RedisStore(redis_server.url, history_days=1)
    now = now_ms()
    count = RECORDS_PER_CALL * 2 + 7
    for n in range(1, count + 1):
        store.record_room("#burst", n, "alice", f"line {n}", now)
        if n % 100 == 0:
            store.record_room("#other", n // 100, "bob", "aside", now)
    page = eventually(lambda: (p := store.room_history("#burst", count + 1, 0)) and len(p) == count and p)
    assert [entry[0] for entry in page] == list(range(1, count + 1))
    assert [entry[3] for entry in page[:2]] == ["line 1", "line 2"]
    assert len(eventually(lambda: store.room_history("#other", 50, 0))) == count // 100
    assert 0 < store._redis.pttl("chatroom:room:#burst:messages") <= 86_400_000
    store._redis.close()


def unlinks(client) -> int:
    """UNLINK commands a Redis (every node of a Redis Cluster) has run."""
    nodes = (
        [client.get_redis_connection(node) for node in client.get_nodes()]
        if isinstance(client, redis.RedisCluster)
        else [client]
    )
    return sum(node.info("commandstats").get("cmdstat_unlink", {}).get("calls", 0) for node in nodes)


def test_a_dropped_rooms_history_is_freed_by_redis_in_the_background(redis_server):
    """A room's messages go with it through UNLINK, which Redis frees in a thread of its own
    for a long history, instead of DEL, which held every node's commands meanwhile."""
    store = RedisStore(redis_server.url, history_days=1)
    for n in range(1, 201):
        store.record_room("#long", n, "alice", f"line {n}", now_ms())
    eventually(lambda: len(store.room_history("#long", 300, 0)) == 200)
    unlinked_before = unlinks(store._redis)
    store.delete_room("#long")
    assert store.room_history("#long", 10, 0) == []
    assert unlinks(store._redis) >= unlinked_before + 4  # (the room, members, invited, messages)
    store._redis.close()


def test_a_rooms_last_messages_still_queued_go_with_it(redis_server):
    """Messages recorded just before the room is dropped (its last member posts, then leaves)
    are not written after its history is deleted: a room of the same name would have shown
    them. Those written already go with it."""
    store = RedisStore(redis_server.url, history_days=1)
    for n in range(1, 6):
        store.record_room("#brief", n, "alice", f"line {n}", now_ms())
    store.delete_room("#brief")  # (before the recorder has run)
    for n in range(1, 4):
        store.record_room("#busy", n, "alice", f"line {n}", now_ms())
    eventually(lambda: store._recorder is None, what="them written")
    store.delete_room("#busy")
    eventually(lambda: store._recorder is None, what="the recorder done")
    assert store.room_history("#brief", 10, 0) == [] and store.room_history("#busy", 10, 0) == []
    assert not store._redis.exists("chatroom:room:#brief:messages", "chatroom:room:#busy:messages")
    store._redis.close()


def test_a_dropped_rooms_messages_written_after_the_drop_stay_out_of_a_room_of_its_name(redis_server):
    """A message of the room another node had queued (or this one had on its way) when the room
    was dropped is written after its history was deleted: a room made since with the same name
    shows neither it in its history nor it in a search; what the new room says, it shows."""
    here, there = RedisStore(redis_server.url, history_days=1), RedisStore(redis_server.url, history_days=1)
    old_id, old_time = next_id()
    there.delete_room("#brief")  # (its last member left, on the other node...)
    here.record_room("#brief", old_id, "alice", "the old plans", old_time)  # (...what this one had queued)
    eventually(lambda: here._recorder is None, what="it written")
    assert here._redis.zcard("chatroom:room:#brief:messages") == 1  # (written after all)
    new_id, new_time = next_id()
    here.record_room("#brief", new_id, "bob", "the new plans", new_time)
    eventually(lambda: here._recorder is None, what="the new room's written")
    for store in (here, there):
        assert [entry[0] for entry in store.room_history("#brief", 10, 0)] == [new_id]
        assert [hit[1] for hit in store.search("bob", "plans", None, ["#brief"], 10, 0)] == [new_id]
    assert 0 < here._redis.pttl("chatroom:room:#brief:dropped") <= 86_400_000  # (as long as the history)
    for store in (here, there):
        store._redis.close()


def test_an_account_has_markers_for_a_thousand_conversations_at_most_in_redis_too(redis_server):
    from chatroom.device_frames import MOST_MARKERS

    store = RedisStore(redis_server.url, history_days=1)
    for number in range(MOST_MARKERS):
        assert store.set_marker("alice", f"u{number}", 7) == 7
    assert store.set_marker("alice", "another", 7) is None
    assert store.set_marker("alice", "u5", 1 << 62) == 1 << 62  # (those it has still move)
    assert store.set_marker("alice", "u5", 9) == 1 << 62  # (forward only)
    assert store._redis.hlen("chatroom:markers:alice") == MOST_MARKERS
    store._redis.close()


def test_an_account_keeps_its_newest_tokens_in_redis_too_and_a_new_password_revokes_every_one(redis_server):
    from chatroom.server.storage.accounts import MOST_TOKENS

    store = RedisStore(redis_server.url, history_days=1)
    later = now_ms() + 60_000
    store._redis.sadd("chatroom:tokens:alice", "before")  # kept as a set before tokens were bounded
    store._redis.set("chatroom:token:before", "alice")
    for number in range(MOST_TOKENS + 3):
        store.add_token(f"h{number:03}", "alice", later + number, MOST_TOKENS)
    owners = [store.token_owner(f"h{number:03}") for number in (0, 2, 3, MOST_TOKENS + 2)]
    assert owners == [None, None, "alice", "alice"]
    assert store._redis.zcard("chatroom:token-times:alice") == MOST_TOKENS
    store.add_token("a", "alice", later + 3, MOST_TOKENS)  # as old as the oldest, and sorted first
    assert store.token_owner("a") == "alice" and store.token_owner("h003") is None
    store.add_token("expired", "alice", now_ms() - 1, MOST_TOKENS)
    assert store._redis.zscore("chatroom:token-times:alice", "expired") is None
    assert store.token_owner("h004") == "alice"
    store.revoke_tokens("alice")
    assert [store.token_owner(token_hash) for token_hash in ("before", "a", "h004")] == [None] * 3
    assert not store._redis.exists("chatroom:token-times:alice", "chatroom:tokens:alice")
    store._redis.close()


# (On one kind of Redis each, these two: the suite's time. The room scripts' keys are the
# cluster's concern; the devices' logic is the same over either.)
@pytest.mark.parametrize("redis_server", ["redis-cluster"], indirect=True)
@pytest.mark.parametrize("seed", [1])
def test_two_nodes_under_random_room_requests_tell_the_same_rooms(nodes, seed):
    """Guests and registered users, at either node, join, part, remove, invite, hand rooms
    on, come and go and register (tests/test_rooms_random.py): the nodes agree."""
    from tests.test_rooms_random import Users, assert_clean, assert_owned_as_it_must_be, rooms_seen_from

    one, two = nodes(2)
    users = Users([one.address, two.address])
    users.play(seed)
    eventually(lambda: rooms_seen_from(one.address) == rooms_seen_from(two.address), what="the same rooms")
    assert_owned_as_it_must_be(rooms_seen_from(one.address), users.registered)
    users.close()
    assert_clean(one, two)


def _read_what_came(peer) -> bool:
    """Decode what the server sent peer so far, without waiting; False once it closed."""
    peer.sock.setblocking(False)
    try:
        while data := peer.sock.recv(65536):
            peer.events.extend(peer.decoder.receive_data(data))
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        peer.sock.settimeout(WAIT)


@pytest.mark.parametrize("redis_server", ["redis"], indirect=True)
def test_devices_under_random_requests_at_two_nodes_end_only_as_told(nodes):
    """Two registered users' devices log in at either node, log out, vanish, end each other's
    sessions and change passwords, at random: a connection the server closes was told
    SESSION-ENDED first; at the end both nodes list who has a session, and every session
    counts its user's."""
    from chatroom.device_frames import Away, EndSession, SessionEnded, SessionFlag, SessionList, Sessions
    from chatroom.protocol import ChangePassword

    one, two = nodes(2)
    rng = random.Random(7)
    passwords = {"a": "pw", "b": "pw"}
    for name in passwords:
        hello_peer(one.address, 4, name, "pw").close()
    live: list[tuple[str, Peer]] = []

    def told_why(peer) -> None:
        assert SessionEnded() in peer.pushed + peer.events, (peer.pushed + peer.events)[-5:]

    for step in range(250):
        action = rng.choice(["device", "device", "logout", "vanish", "end", "end", "password", "away"])
        if action == "device" or not live:
            name, peer = rng.choice("ab"), Peer(rng.choice([one.address, two.address]))
            if len(live) < 12 and peer.reply(Hello(4)) == OK and peer.reply(Authenticate(name, passwords[name])) == OK:
                live.append((name, peer))
            else:
                peer.close()
            continue
        name, peer = rng.choice(live)
        try:
            if action in ("logout", "vanish"):
                assert action == "vanish" or peer.reply(Logout()) == OK
                peer.close()
                live.remove((name, peer))
            elif action == "end":
                numbers = [entry.number for entry in peer.reply(Sessions()).sessions]
                assert peer.reply(EndSession(rng.choice(numbers))) in (OK, failure(Reason.NO_SUCH_SESSION))
            elif action == "password" and peer.reply(ChangePassword(passwords[name], f"pw{step}")) == OK:
                passwords[name] = f"pw{step}"
            elif action == "away":
                assert peer.reply(Away(True, "out") if rng.random() < 0.5 else Away(False)) == OK
        except AssertionError as closed:  # (ended meanwhile, by another device or a new password)
            assert "connection closed" in str(closed)
            told_why(peer)
            peer.close()
            live.remove((name, peer))
        for gone in [(owner, device) for owner, device in live if not _read_what_came(device)]:
            told_why(gone[1])
            gone[1].close()
            live.remove(gone)

    def settled() -> bool:
        """Every session left answers, each counting its user's (a session ended meanwhile, by
        a request of the last steps still on its way to the other node, goes, told why)."""
        listings = {}
        for device in list(live):
            try:
                listings[device] = device[1].reply(Sessions())
            except AssertionError:
                told_why(device[1])
                device[1].close()
                live.remove(device)
                return False
        counts = {name: sum(owner == name for owner, _ in live) for name in passwords}
        return all(
            type(listing) is SessionList
            and len(listing.sessions) == counts[owner]
            and sum(bool(entry.flags & SessionFlag.THIS) for entry in listing.sessions) == 1
            for (owner, _), listing in listings.items()
        )

    eventually(settled, what="the sessions left, each counting its user's")
    sessions = {name: [device for device in live if device[0] == name] for name in passwords}
    online = UserList(tuple(name for name, listings in sessions.items() if listings))

    def listed_at(node) -> UserList:
        asking = hello_peer(node.address, 4)
        try:
            return asking.reply(ListUsers())
        finally:
            asking.close()

    for node in (one, two):
        eventually(lambda node=node: listed_at(node) == online, what="who is on")
    assert "Traceback" not in one.log_text() + two.log_text()
    for _, peer in live:
        peer.close()
