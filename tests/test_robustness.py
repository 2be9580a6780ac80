"""The server under stalled readers, floods, trickles, garbage and connection churn.

Each test runs a real server process and checks, besides its own point, that the server
logged no traceback.
"""

import random
import re
import resource
import socket
import struct
import time

import gevent
import pytest
from gevent.event import Event
from gevent.pool import Pool

from chatroom.codec import encode
from chatroom.protocol import MAX_BODY, Incoming, ListUsers, Login, SendTo, UserList
from chatroom.testing import (
    FAILURE,
    MALFORMED,
    OK,
    WAIT,
    Peer,
    assert_clean_log,
    cpu_seconds,
    eventually,
    random_frames,
    rss_kb,
)


def assert_pair_chats(address, tag="x"):
    alice, bob = Peer(address), Peer(address)
    try:
        alice.login(f"alice{tag}")
        bob.login(f"bob{tag}")
        assert alice.request(SendTo(f"bob{tag}", "still here?")) == OK
        assert bob.next_event() == Incoming(f"alice{tag}", "still here?")
    finally:
        alice.close()
        bob.close()


# --- Stalled recipients -----------------------------------------------------------------


def test_stalled_recipient_is_dropped_and_other_pairs_keep_pace(server_process, logged_in):
    server = server_process("--sendq", "65536", "--send-timeout", "1")
    stalled = logged_in(server.address, "stalled")
    flooder = logged_in(server.address, "flooder")
    alice, bob = logged_in(server.address, "alice"), logged_in(server.address, "bob")

    def flood():
        text = "x" * 60000
        for sent in range(2000):
            reply = flooder.request(SendTo("stalled", text))
            if reply == FAILURE:
                return sent
        return None

    def ping_pong(count=300):
        slowest = 0.0
        for seq in range(count):
            started = time.monotonic()
            assert alice.request(SendTo("bob", str(seq))) == OK
            slowest = max(slowest, time.monotonic() - started)
        return slowest

    flooding = gevent.spawn(flood)
    pairs = []
    while not flooding.ready():
        pairs.append(ping_pong())
        assert len(pairs) < 100, "the stalled recipient was never dropped"
    assert flooding.get() is not None
    assert max(pairs) < 0.5  # a pair held up by the stall would wait the whole 1 s send timeout
    received = [int(bob.next_event().text) for _ in range(300 * len(pairs))]
    assert received == list(range(300)) * len(pairs)  # nothing acknowledged was lost or reordered
    stalled.assert_closed()
    assert flooder.request(ListUsers()) == UserList(("alice", "bob", "flooder"))
    server.wait_for_log("is not reading")
    assert server.log_text().count("is not reading") == 1
    assert re.search(
        r"stalled \(\S+\) is not reading; disconnecting, \d+ relayed messages undelivered", server.log_text()
    )
    assert_clean_log(server.log_text())


def test_client_that_never_reads_its_replies_is_dropped(server_process, peer_at):
    server = server_process("--sendq", "65536", "--send-timeout", "1")
    greedy = peer_at(server.address)
    greedy.sock.settimeout(None)
    burst = encode(ListUsers()) * 20000

    def pipeline_without_reading():
        try:
            for _ in range(2000):
                greedy.send_raw(burst)
        except (ConnectionResetError, BrokenPipeError):
            return True  # the server dropped the connection
        return False

    assert gevent.spawn(pipeline_without_reading).get(timeout=60)
    assert_pair_chats(server.address)
    server.wait_for_log("is not reading; disconnecting")
    assert_clean_log(server.log_text())


# --- Frame timeout, rate limit, fairness ------------------------------------------------


def test_frame_must_complete_within_the_frame_timeout(server_process, peer_at):
    server = server_process("--frame-timeout", "0.5")
    idle = peer_at(server.address)
    partial_header = peer_at(server.address)
    partial_header.send_raw(b"\x03\x00")
    trickler = peer_at(server.address)
    frame = encode(SendTo("bob", "y" * 100))

    def trickle():
        for i in range(len(frame)):
            trickler.send_raw(frame[i : i + 1])
            gevent.sleep(0.05)

    trickling = gevent.spawn(trickle)
    started = time.monotonic()
    partial_header.assert_closed()
    trickler.assert_closed()
    trickling.kill()
    assert time.monotonic() - started < 2.0
    # A connection with no frame under way may stay idle as long as it likes.
    assert idle.request(ListUsers()) == UserList(())
    server.wait_for_log("did not complete a frame")
    assert_clean_log(server.log_text())


def test_frames_completing_one_after_another_do_not_trip_the_frame_timeout(server_process, peer_at):
    server = server_process("--frame-timeout", "0.5")
    peer = peer_at(server.address)
    frame = encode(ListUsers())
    for _ in range(8):  # 1.6 s in all, each frame complete within 0.2 s
        peer.send_raw(frame + frame[:3])
        gevent.sleep(0.1)
        peer.send_raw(frame[3:])
        assert peer.next_event() == UserList(())
        assert peer.next_event() == UserList(())
        gevent.sleep(0.1)


def test_rate_limit_slows_a_flood_without_dropping_frames(server_process, peer_at):
    server = server_process("--rate-limit", "50")
    peer = peer_at(server.address)
    started = time.monotonic()
    peer.send(*[ListUsers()] * 150)
    assert [peer.next_event() for _ in range(150)] == [UserList(())] * 150
    # 50 frames may come in a burst; the other 100 at 50 a second take at least 2 s.
    assert time.monotonic() - started >= 1.5
    assert_clean_log(server.log_text())


def test_a_pipelining_flood_does_not_starve_other_clients(server_process, logged_in, peer_at):
    server = server_process()
    flood = peer_at(server.address)
    burst = encode(ListUsers()) * 50000
    stop = Event()
    replies = [0]  # bytes of replies the flood has had back

    def send_flood():
        # Until the pair is done (or 15 s): a server without fairness would starve the pair
        # for all that time, not just for a moment.
        deadline = time.monotonic() + 15
        while not stop.is_set() and time.monotonic() < deadline:
            flood.send_raw(burst)

    def drain_replies():
        while data := flood.sock.recv(1 << 20):
            replies[0] += len(data)

    sender, drainer = gevent.spawn(send_flood), gevent.spawn(drain_replies)
    eventually(lambda: replies[0] > 0)
    alice, bob = logged_in(server.address, "alice"), logged_in(server.address, "bob")
    replies_before = replies[0]
    slowest = 0.0
    for seq in range(100):
        started = time.monotonic()
        assert alice.request(SendTo("bob", str(seq))) == OK
        assert bob.next_event() == Incoming("alice", str(seq))
        slowest = max(slowest, time.monotonic() - started)
    flooded = replies[0] - replies_before
    stop.set()
    sender.kill()
    drainer.kill()
    assert flooded > 100_000, "the flood was not being served while the pair chatted"
    assert slowest < 0.5


# --- Connection limits and churn --------------------------------------------------------


def test_max_clients_refuses_extra_connections_at_once(server_process, logged_in, peer_at):
    server = server_process("--max-clients", "3")
    first = [logged_in(server.address, f"u{i}") for i in range(3)]
    extra = peer_at(server.address)
    extra.assert_closed()
    server.wait_for_log("1 max_clients")
    first[0].close()
    eventually(lambda: _serves(server.address))
    assert_clean_log(server.log_text())


def _serves(address) -> bool:
    peer = Peer(address)
    try:
        return peer.request(ListUsers()) is not None
    except (AssertionError, OSError):
        return False
    finally:
        peer.close()


def test_running_out_of_file_descriptors_pauses_accept_without_crash_or_spin(server_process, peer_at):
    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    server = server_process(preexec_fn=low_fd_limit)
    peers = []
    for _ in range(60):  # more than 40 descriptors can hold; the rest wait in the backlog
        peers.append(peer_at(server.address))
    server.wait_for_log("cannot accept connections")
    cpu_before = cpu_seconds(server.pid)
    gevent.sleep(1.0)  # the window in which a spinning accept loop would burn CPU
    assert cpu_seconds(server.pid) - cpu_before < 0.3
    for peer in peers[:40]:  # room for the waiting ones, and for two more
        peer.close()
    # The connections left waiting in the backlog are served once descriptors are free again.
    assert peers[-1].request(ListUsers()) == UserList(())
    assert_pair_chats(server.address)
    assert_clean_log(server.log_text())


def test_a_thousand_connect_disconnect_cycles(server_process, peer_at):
    server = server_process()
    rst = struct.pack("ii", 1, 0)

    def cycle(i):
        peer = peer_at(server.address)
        kind = i % 5
        if kind == 1:
            peer.login(f"user{i}")
        elif kind == 2:
            peer.send_raw(encode(SendTo("someone", "half a frame"))[:12])
        elif kind == 3:
            peer.send(Login(f"user{i}"), ListUsers())
            peer.send_raw(b"\x03\x00\x00")
        elif kind == 4:
            peer.send_raw(encode(Login(f"user{i}"))[:7])
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, rst)
        peer.close()

    pool = Pool(50)
    for i in range(1000):
        pool.spawn(cycle, i)
    pool.join(timeout=60, raise_error=True)
    watcher = peer_at(server.address)
    eventually(lambda: watcher.request(ListUsers()) == UserList(()))
    assert_pair_chats(server.address)
    assert_clean_log(server.log_text())


# --- Hostile bytes ----------------------------------------------------------------------


def blast(address, data: bytes):
    """Send data, say no more, and read whatever comes back until the server closes."""
    peer = Peer(address)
    try:
        peer.send_raw(data)
        peer.sock.shutdown(socket.SHUT_WR)
        peer.assert_closed()
    except OSError:
        pass  # the server may close first, while we still send
    finally:
        peer.close()


def test_random_and_mutated_frames(server_process):
    server = server_process()
    rng = random.Random(20261124)

    def round_of(connections):
        pool = Pool(20)
        for _ in range(connections):
            pool.spawn(blast, server.address, random_frames(rng, 25))
        pool.join(timeout=60, raise_error=True)

    round_of(100)  # warm up: the first connections allocate what every later one reuses
    baseline = rss_kb(server.pid)
    for _ in range(4):
        round_of(100)  # 10,000 frames in all
    assert_pair_chats(server.address)
    grown = rss_kb(server.pid) - baseline
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB"
    assert_clean_log(server.log_text())


def drain(peer) -> None:
    """Read what comes, until the connection closes."""
    peer.sock.settimeout(None)
    try:
        while peer.sock.recv(1 << 20):
            pass
    except OSError:
        pass


def _newest_client_frame(rng, members: int) -> bytes:
    """A frame a registered client of the newest version sends, valid and filled at random:
    room and direct messages (the compiled relay's ways), and requests around them (rooms,
    history, devices, markers, away, search, tokens)."""
    from chatroom.device_frames import Away, EndSession, Mark, Sessions, Unread
    from chatroom.protocol import HistoryRequest, Resume, TokenRequest, Watch
    from chatroom.room_frames import Invite, Join, Kick, ListMembers, ListRooms, Part, SetTopic
    from chatroom.search_frames import Search

    text = rng.choice(["hi", "é日本\u202e", "", " ", "a\0b", "x" * rng.randrange(0, 3000)])
    name, room = f"f{rng.randrange(members + 2)}", f"#r{rng.randrange(4)}"
    return encode(
        rng.choice(
            [
                SendTo("#fz", text),
                SendTo("#fz", text),
                SendTo(name, text),
                SendTo(name, text),
                Join("#fz"),
                Part("#fz"),
                Join(room),
                SetTopic("#fz", text[:100]),
                ListRooms(),
                ListMembers("#fz"),
                Invite("#fz", name),
                Kick(room, name),
                HistoryRequest(name, 5, 0),
                Watch(rng.random() < 0.5),
                ListUsers(),
                Sessions(),
                EndSession(rng.randrange(4)),
                Mark(rng.choice([name, "#fz"]), rng.randrange(1 << 62)),
                Unread(),
                Away(rng.random() < 0.5, text[:100]),
                Search(rng.randrange(120), 0, rng.choice(["", name, "#fz", "#r0"]), text[:200] or "hi"),
                TokenRequest(),
                Resume(name, rng.choice(["", "not a token"])),
            ]
        )
    )


def test_mutated_frames_from_registered_clients_of_the_newest_version(server_process, peer_at):
    from chatroom.protocol import EXTENSION_VERSION, Authenticate, Hello, Register, Resume, TokenRequest
    from chatroom.room_frames import Join

    server = server_process()
    rng = random.Random(20261207)
    names = [f"f{number % 6}" for number in range(8)]  # (f0 and f1 on two devices)

    def device(name):
        peer = peer_at(server.address)
        assert peer.request(Hello(EXTENSION_VERSION)) == OK
        # (No password to hash: devices come back often; but one ended by END-SESSION took its
        # token with it.)
        if peer.reply(Resume(name, tokens[name])) != OK:
            assert peer.reply(Authenticate(name, "pw")) == OK
            tokens[name] = peer.reply(TokenRequest()).token
        peer.send(Join("#fz"))
        return peer

    tokens = {}
    for name in names[:6]:
        peer = peer_at(server.address)
        assert peer.request(Hello(EXTENSION_VERSION)) == OK
        assert peer.request(Register(name, "pw")) == OK
        tokens[name] = peer.request(TokenRequest()).token
        peer.close()
    devices = [device(name) for name in names]
    readers = [gevent.spawn(drain, peer) for peer in devices]
    for round_number in range(2000):
        if round_number % 20 == 0:
            gevent.idle()  # (the readers read, and a closed device is seen as such: sleep(0) polls no socket)
        number = rng.randrange(len(devices))
        if readers[number].dead:  # (closed for what it sent: a new device of the same name)
            devices[number] = device(names[number])
            readers[number] = gevent.spawn(drain, devices[number])
        data = bytearray(_newest_client_frame(rng, len(names)))
        if rng.random() < 0.15:
            for _ in range(rng.randint(1, 3)):  # (mostly in the body: a broken length ends the connection)
                at = rng.randrange(5, len(data)) if len(data) > 5 and rng.random() < 0.9 else rng.randrange(len(data))
                data[at] = rng.randrange(256)
        try:
            with gevent.Timeout(WAIT):
                devices[number].sock.sendall(data)
        except OSError:
            pass  # (the server closed it meanwhile)
    assert_pair_chats(server.address)
    assert_clean_log(server.log_text())
    gevent.killall(readers)


def test_big_bodies_and_oversize_lengths(server_process, peer_at):
    server = server_process()
    rng = random.Random(7)
    for _ in range(20):
        body = rng.randbytes(rng.randint(100_000, MAX_BODY))
        blast(server.address, struct.pack("!BI", rng.choice([1, 3, 9]), len(body)) + body)
    for length in [MAX_BODY + 1, 1 << 24, 0xFFFFFFFF]:
        peer = peer_at(server.address)
        peer.send_raw(struct.pack("!BI", 0x01, length))
        assert peer.next_event() == MALFORMED
        peer.assert_closed()
    peer = peer_at(server.address)
    peer.send_raw(b"".join(struct.pack("!BI", t, 0) for t in range(256)))
    replies = [peer.next_event() for _ in range(256)]
    assert sum(r == MALFORMED for r in replies) == 253  # all but LOGIN, LIST and LOGOUT
    assert_pair_chats(server.address)
    assert_clean_log(server.log_text())


# --- Many clients -----------------------------------------------------------------------


@pytest.fixture
def many_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 11000:
        pytest.fail(f"the hard limit on open files ({hard}) is too low to hold 10,000 clients")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_ten_thousand_clients_then_shutdown_within_two_seconds(server_process, many_files, peer_at):
    server = server_process("--log-level", "WARNING", "--max-clients", "10001")
    count = 10000
    login = struct.pack("!BI", 0x01, 6)
    sockets = []

    def connect_and_log_in(i):
        sock = socket.create_connection(server.address, timeout=WAIT)
        sock.sendall(login + b"u%05d" % i)
        assert sock.recv(6) == b"\x82\x00\x00\x00\x01\x00"
        sockets.append(sock)

    pool = Pool(500)
    for i in range(count):
        pool.spawn(connect_and_log_in, i)
    pool.join(timeout=120, raise_error=True)
    assert len(sockets) == count
    watcher = peer_at(server.address)
    names = watcher.request(ListUsers()).names
    assert len(names) == count
    print(f"RSS with {count} logged-in clients: {rss_kb(server.pid) / 1024:.0f} MiB")

    started = time.monotonic()
    server.signal()
    assert server.wait() == 0
    assert time.monotonic() - started < 2.0
    for sock in sockets[:: count // 50]:
        with gevent.Timeout(WAIT):
            assert sock.recv(100) in (b"",)
    for sock in sockets:
        sock.close()
    assert_clean_log(server.log_text())


def test_keepalive_is_on_for_every_client(server, connect):
    connect().login("alice")
    (session,) = server._sessions
    sock = session._stream._sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
    interval = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
    probes = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
    assert idle + interval * probes == 90


# --- Parked connections -----------------------------------------------------------------


def test_a_parked_connection_keeps_nothing_of_its_greenlet(server, connect):
    """Parking frees the greenlet's frames at once, not at the collector's next round (a
    cycle through them would cost every idle connection kilobytes until then)."""
    import gc
    import types

    from chatroom.server.connection.session import Session

    def serving_frames():
        return [o for o in gc.get_objects() if type(o) is types.FrameType and o.f_code is Session._serve.__code__]

    gc.collect()
    gc.disable()  # (what is left must be freed by its count of references alone)
    try:
        connect().login("alice")
        (session,) = server._sessions
        eventually(lambda: session.parked, timeout=WAIT, what="the session parked")
        assert serving_frames() == []
    finally:
        gc.enable()


def test_quiet_connections_park_and_wake(server_process, logged_in, peer_at):
    server = server_process("--frame-timeout", "2.5")
    alice, bob = logged_in(server.address, "alice"), logged_in(server.address, "bob")
    trickler = peer_at(server.address)
    trickler.send_raw(b"\x02\x00")  # a frame begun, never finished
    gevent.sleep(1.5)  # the quiet time after which every connection here gives up its greenlet
    assert alice.request(SendTo("bob", "wake up")) == OK
    assert bob.next_event() == Incoming("alice", "wake up")
    assert bob.request(SendTo("alice", "awake")) == OK
    assert alice.next_event() == Incoming("bob", "awake")
    # The frame timer still runs while its connection is parked.
    trickler.assert_closed()
    server.wait_for_log("did not complete a frame in 2.5 s")
    assert_clean_log(server.log_text())
