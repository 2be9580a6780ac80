"""chatroom-bench against a real server, and against a faulty one its checks must catch."""

import json
import sys

import pytest
from gevent import subprocess

from chatroom.codec import Decoder, encode
from chatroom.protocol import Incoming, ListUsers, Login, Response, SendTo, Status, UserList
from chatroom.testing import assert_clean_log, eventually, free_port

pytestmark = pytest.mark.process


def bench(address, *args):
    result = subprocess.run(
        [sys.executable, "-m", "chatroom.bench", "--host", address[0], "--port", str(address[1]), "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, json.loads(result.stdout), result.stderr


def test_registered_users_on_two_devices_relay_and_lose_nothing(server_process):
    server = server_process("--log-level", "WARNING")
    args = ["--duration", "1", "--warmup", "0.3", "--clients", "4", "--window", "4", "--verify", "--register"]
    status, result, _ = bench(server.address, *args, "--devices", "2")
    assert status == 0, result
    assert result["delivered"] > 100 and result["lost"] == result["duplicated"] == result["reordered"] == 0
    # The second devices got every message too (each at least its 64 bytes, framed).
    assert result["devices"] == 2 and result["device_bytes"] >= 64 * result["delivered"]


def test_relay_and_fanin_lose_nothing(server_process):
    server = server_process("--log-level", "WARNING")
    status, result, progress = bench(
        server.address, "--duration", "1", "--warmup", "0.3", "--clients", "6", "--window", "4", "--verify"
    )
    assert status == 0, result
    assert result["delivered"] > 100 and result["msgs_per_s"] > 0
    assert result["lost"] == result["duplicated"] == result["reordered"] == 0
    assert result["failures"] == result["disconnects"] == result["framing_errors"] == 0
    assert 0 < result["p50_us"] <= result["p99_us"] <= result["p999_us"] <= result["max_us"]
    assert "msgs/s" in progress  # the progress line
    status, result, _ = bench(
        server.address,
        "--scenario",
        "fanin",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--clients",
        "5",
        "--window",
        "8",
        "--verify",
        "--prefix",
        "f",
    )
    assert status == 0 and result["delivered"] > 100 and result["lost"] == 0


def test_relay_over_websocket_loses_nothing_and_leaves_no_one_behind(server_process, logged_in):
    web_port = free_port()
    server = server_process("--log-level", "WARNING", "--web", f"127.0.0.1:{web_port}")
    arguments = ["--duration", "1", "--warmup", "0.3", "--clients", "6", "--window", "4", "--verify", "--websocket"]
    status, result, _ = bench(("127.0.0.1", web_port), *arguments)
    assert status == 0, result
    assert result["delivered"] > 100 and result["lost"] == result["duplicated"] == result["reordered"] == 0
    assert result["failures"] == result["disconnects"] == result["framing_errors"] == 0
    # Its connections end without a close frame: the server must still log them all out.
    watcher = logged_in(server.address, "watcher")
    eventually(lambda: watcher.request(ListUsers()) == UserList(("watcher",)))
    assert_clean_log(server.log_text())


def test_hold_reports_ready(server_process):
    server = server_process("--log-level", "WARNING")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatroom.bench",
            "--port",
            str(server.port),
            "--scenario",
            "hold",
            "--clients",
            "50",
            "--duration",
            "0.5",
            "--warmup",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("READY 50\n")


def faulty_relay():
    """A handler that relays like a chat server, but drops some acknowledged messages and
    doubles others."""
    sessions = {}

    def handle(sock):
        decoder = Decoder.for_server()
        name = None
        while data := sock.recv(65536):
            for event in decoder.receive_data(data):
                if isinstance(event, Login):
                    name = event.name
                    sessions[name] = sock
                    sock.sendall(encode(Response(Status.OK)))
                elif isinstance(event, SendTo):
                    seq = int(event.text.split()[0])
                    relay = encode(Incoming(name, event.text))
                    copies = 0 if seq % 7 == 3 else 2 if seq % 10 == 0 else 1
                    sessions[event.recipient].sendall(relay * copies)
                    sock.sendall(encode(Response(Status.OK)))

    return handle


def test_verify_catches_lost_and_duplicated_messages(fake_server):
    server = fake_server(faulty_relay())
    status, result, _ = bench(server.address, "--duration", "0.5", "--warmup", "0", "--verify")
    assert status == 1
    assert result["lost"] > 0 and result["duplicated"] > 0


def test_help_explains_the_figures():
    result = subprocess.run(
        [sys.executable, "-m", "chatroom.bench", "--help"], capture_output=True, text=True, timeout=30
    )
    for figure in ["msgs/s", "p99", "lost", "duplicated", "reordered", "relay", "fanin", "hold"]:
        assert figure in result.stdout


def test_the_room_scenario_delivers_to_every_member_in_one_order(server_process):
    server = server_process("--log-level", "WARNING")
    args = ("--scenario", "room", "--clients", "20", "--room-size", "10", "--senders", "3", "--window", "4")
    status, result, _ = bench(server.address, *args, "--duration", "1", "--warmup", "0.3", "--verify")
    assert status == 0, result
    assert result["room_size"] == 10 and result["misordered"] == 0
    assert result["lost"] == result["duplicated"] == result["reordered"] == 0
    assert result["delivered"] > 100 and result["msgs_per_s"] == pytest.approx(10 * result["messages_per_s"], rel=0.01)


def shuffling_room(sock):
    """A fake server whose room hands each member the same messages under other ids."""
    from chatroom.protocol import Hello
    from chatroom.room_frames import Join, RoomMessage

    decoder, name = Decoder.for_server(), None
    while data := sock.recv(65536):
        for event in decoder.receive_data(data):
            if isinstance(event, (Hello, Login, Join)):
                name = getattr(event, "name", name)
                sock.sendall(encode(Response(Status.OK)))
            elif isinstance(event, SendTo):
                seq = int(event.text.split()[0])
                message_id = seq + 1 if seq % 2 else seq + 3  # two ids, then the same id twice
                sock.sendall(encode(RoomMessage(event.recipient, name, message_id, 0, event.text)))
                sock.sendall(encode(Response(Status.OK)))


def test_verify_catches_a_room_out_of_order(fake_server):
    server = fake_server(shuffling_room)
    args = ("--scenario", "room", "--clients", "1", "--room-size", "1", "--senders", "1")
    status, result, _ = bench(server.address, *args, "--duration", "0.5", "--warmup", "0", "--verify")
    assert status == 1 and result["misordered"] > 0
