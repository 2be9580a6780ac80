"""chatroom-server as a real process: command line, logging, signals."""

import signal
import sys
import time

import pytest
from gevent import subprocess

from chatroom.protocol import Incoming, ListUsers, SendTo, UserList
from chatroom.testing import OK, assert_clean_log, eventually

pytestmark = pytest.mark.process


def test_chat_through_a_server_process_and_its_log(server_process, peer_at):
    server = server_process()
    alice, bob = peer_at(server.address), peer_at(server.address)
    alice.login("alice")
    bob.login("bob")
    assert alice.request(SendTo("bob", "secret words")) == OK
    assert bob.next_event() == Incoming("alice", "secret words")
    assert alice.request(ListUsers()) == UserList(("alice", "bob"))
    bob.close()
    eventually(lambda: alice.request(ListUsers()) == UserList(("alice",)))
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    log = server.log_text()
    for expected in ["Listening on 127.0.0.1:", "connect 127.0.0.1:", "login alice", "login bob", "logout bob"]:
        assert expected in log
    assert "secret words" not in log
    assert_clean_log(log)


def test_sigterm_and_sigint_stop_it_with_status_zero_within_a_second(server_process, peer_at):
    for signum in (signal.SIGTERM, signal.SIGINT):
        server = server_process()
        clients = [peer_at(server.address) for _ in range(20)]
        clients[0].login("alice")
        started = time.monotonic()
        server.signal(signum)
        assert server.wait() == 0
        assert time.monotonic() - started < 1.0
        for client in clients:
            client.assert_closed()
        assert_clean_log(server.log_text())


def test_port_in_use_is_one_clear_line_and_status_one(server_process):
    server = server_process()
    result = subprocess.run(
        [sys.executable, "-m", "chatroom.server", "--host", "127.0.0.1", "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{server.port}" in lines[0] and "in use" in lines[0]


def test_help_names_the_options():
    result = subprocess.run(
        [sys.executable, "-m", "chatroom.server", "--help"], capture_output=True, text=True, timeout=15
    )
    assert result.returncode == 0
    for option in ["--host", "--port", "--log-level"]:
        assert option in result.stdout


def test_an_unusable_database_is_one_clear_line_and_status_one(tmp_path):
    (tmp_path / "db").mkdir()  # a folder where the database file should be
    result = subprocess.run(
        [sys.executable, "-m", "chatroom.server", "--port", "0", "--db", str(tmp_path / "db")],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("chatroom-server: cannot use the database") and "Traceback" not in result.stderr
