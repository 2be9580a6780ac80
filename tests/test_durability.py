"""What the server answered STORED or OK for is stored: across a kill -9 under load, and on a
disk that fills up (where the requests that cannot be stored get FAILURE instead)."""

import shutil
import sqlite3
import subprocess
import time

import gevent
import pytest

from chatroom import testing
from chatroom.protocol import (
    Authenticate,
    HistoryPage,
    HistoryRequest,
    Register,
    Response,
    SendTo,
    Status,
    StoredMessage,
)
from chatroom.testing import FAILURE, OK, WAIT, Peer, assert_clean_log, eventually, free_port

pytestmark = pytest.mark.process

STORED = Response(Status.STORED)
RECIPIENTS = [f"away{i}" for i in range(8)]  # registered, offline: messages to them are kept
PASSWORD = "correct horse"


def extended(address, name=None):
    return testing.extended(address, name, PASSWORD)


def stored_for(address, name) -> list[str]:
    """The texts kept for a registered name, taken by logging in."""
    peer = extended(address)
    try:
        peer.send(Authenticate(name, PASSWORD))
        assert peer.next_event() == OK
        texts = []
        with gevent.Timeout(1.0, False):  # stored messages follow the OK at once
            while True:
                event = peer.next_event()
                assert isinstance(event, StoredMessage)
                texts.append(event.text)
        return texts
    finally:
        peer.close()


def test_nothing_answered_stored_or_registered_is_lost_to_a_kill_9(server_process, tmp_path):
    server = server_process(data_dir=tmp_path)
    for name in RECIPIENTS:
        extended(server.address, name).close()
    stored: list[str] = []  # texts answered STORED
    registered: list[str] = []  # names answered OK to REGISTER
    relayed: list[float] = []  # when each history message between two users was answered OK

    peers: list[Peer] = []  # closed at the end

    def send_offline(number):
        peer = extended(server.address)
        peers.append(peer)
        peer.login(f"sender{number}")
        for batch in range(10_000):
            # Long texts: a writer that answered before writing would fall far behind.
            texts = [f"s{number}-{batch}-{i} " + "x" * 30_000 for i in range(20)]
            peer.send(*[SendTo(RECIPIENTS[(batch + i) % len(RECIPIENTS)], text) for i, text in enumerate(texts)])
            for text in texts:
                if peer.next_event() == STORED:
                    stored.append(text.split(" ", 1)[0])

    def register(number):
        for i in range(10_000):
            peer = extended(server.address)
            try:
                if peer.request(Register(f"r{number}x{i}", PASSWORD)) == OK:
                    registered.append(f"r{number}x{i}")
            finally:
                peer.close()

    def talk():
        alice, carol = extended(server.address, "alice"), extended(server.address, "carol")
        peers.extend([alice, carol])
        for i in range(100_000):
            assert alice.request(SendTo("carol", f"h{i}")) == OK
            relayed.append(time.monotonic())
            carol.next_event()

    def until_the_server_dies(work, *args):
        try:
            work(*args)
        except (OSError, AssertionError):
            pass  # killed under it

    workers = [gevent.spawn(until_the_server_dies, send_offline, n) for n in range(3)]
    workers += [gevent.spawn(until_the_server_dies, register, n) for n in range(2)]
    workers.append(gevent.spawn(until_the_server_dies, talk))
    eventually(lambda: len(stored) > 300 and len(registered) > 10 and len(relayed) > 1000, timeout=WAIT * 4)
    server.proc.kill()  # SIGKILL: no drain, no last commit
    killed_at = time.monotonic()
    gevent.joinall(workers, timeout=WAIT)
    gevent.killall(workers)
    for peer in peers:
        peer.close()

    again = server_process(data_dir=tmp_path)
    kept = {text.split(" ", 1)[0] for name in RECIPIENTS for text in stored_for(again.address, name)}
    assert set(stored) <= kept, f"{len(set(stored) - kept)} of {len(stored)} messages answered STORED are gone"
    for name in registered:
        peer = extended(again.address)
        assert peer.request(Authenticate(name, PASSWORD)) == OK, f"{name} was answered OK but is not registered"
        peer.close()
    # History is written behind the relay: what may be lost is what was answered in the last
    # moment before the kill (a bounded window), never more.
    alice = extended(again.address)
    assert alice.request(Authenticate("alice", PASSWORD)) == OK
    page = alice.request(HistoryRequest("carol", 1000))
    alice.close()
    assert isinstance(page, HistoryPage)
    newest = int(page.entries[-1].text[1:]) if page.entries else -1
    lost = len(relayed) - (newest + 1)
    answered_in_last_half_second = sum(1 for moment in relayed if moment > killed_at - 0.5)
    assert lost <= max(answered_in_last_half_second, 1), (lost, answered_in_last_half_second)
    assert_clean_log(again.log_text())


def test_stored_is_answered_only_once_committed(server_process, tmp_path):
    server = server_process(data_dir=tmp_path)
    extended(server.address, "away0").close()
    sender = extended(server.address)
    sender.login("sender")
    assert [sender.request(SendTo("away0", f"before {i}")) for i in range(10)] == [STORED] * 10
    # Another process holds the database's write lock (a backup, say): nothing can be committed.
    lock = sqlite3.connect(tmp_path / "chatroom" / "chatroom.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    sender.send(*[SendTo("away0", f"during {i}") for i in range(50)])
    answered = []
    with gevent.Timeout(1.0, False):
        while True:
            answered.append(sender.next_event())
    assert answered == [], "STORED answered before anything could be stored"
    server.proc.kill()
    lock.execute("ROLLBACK")
    lock.close()
    sender.close()
    again = server_process(data_dir=tmp_path)
    assert stored_for(again.address, "away0") == [f"before {i}" for i in range(10)]


def test_history_waits_for_the_disk_rather_than_fall_behind(server_process, tmp_path):
    """What a kill -9 can lose of the history is bounded in time: once the writer is behind,
    senders of history wait for it instead of being answered OK."""
    server = server_process(data_dir=tmp_path)
    alice, bob = extended(server.address, "alice"), extended(server.address, "bob")
    # Another process holds the database's write lock: the history cannot be committed.
    lock = sqlite3.connect(tmp_path / "chatroom" / "chatroom.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    alice.send(*[SendTo("bob", f"first {i}") for i in range(10)])
    assert [alice.next_event() for _ in range(10)] == [OK] * 10  # (one batch, now stuck in the writer)
    gevent.sleep(0.2)  # the writer is now behind by more than its lag
    alice.send(*[SendTo("bob", f"then {i}") for i in range(10)])
    answered = []
    with gevent.Timeout(1.0, False):
        while True:
            answered.append(alice.next_event())
    assert answered == [], "answered OK while the history could not keep up"
    lock.execute("ROLLBACK")
    lock.close()
    assert [alice.next_event() for _ in range(10)] == [OK] * 10
    page = alice.request(HistoryRequest("bob", 100))
    assert [entry.text for entry in page.entries] == [f"first {i}" for i in range(10)] + [
        f"then {i}" for i in range(10)
    ]
    alice.close()
    bob.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (mounted as root, as CI runs), unmounted at the end."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs (the tests run as root): {mounted.stderr.decode()}"
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_full_disk_fails_what_cannot_be_stored_and_says_so_once(server_process, small_disk):
    metrics_port = free_port()
    server = server_process("--db", str(small_disk / "chatroom.db"), "--metrics", f"127.0.0.1:{metrics_port}")
    try:
        for name in RECIPIENTS:
            extended(server.address, name).close()
        sender = extended(server.address)
        sender.login("filler")
        stored, failed = [], 0
        text = "x" * 4000
        for i in range(2000):  # 8 MB into 2 MB: the disk fills long before the end
            reply = sender.request(SendTo(RECIPIENTS[i % len(RECIPIENTS)], f"{i} {text}"))
            if reply == STORED:
                stored.append(i)
            else:
                assert reply == FAILURE
                failed += 1
        assert stored and failed > 100
        health = _get(f"http://127.0.0.1:{metrics_port}/health")
        assert health == (503, "degraded: the store cannot write\n")
        registering = extended(server.address)
        late = registering.request(Register("late", PASSWORD))  # a small row may still fit
        registering.close()
        sender.close()
        log = server.log_text()
        assert log.count("cannot write") == 1, log[-2000:]
        assert "Traceback" not in log
    finally:
        server.stop()
    with sqlite3.connect(small_disk / "chatroom.db") as db:
        kept = {int(text.split(" ", 1)[0]) for (text,) in db.execute("SELECT text FROM offline")}
        accounts = {name for (name,) in db.execute("SELECT name FROM accounts")}
    assert set(stored) <= kept
    assert late == FAILURE or "late" in accounts


def _get(url):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
