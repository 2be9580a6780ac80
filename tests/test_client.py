"""chatroom-client as a subprocess with pipes, against a real server: every command's output."""

import struct
import sys

import gevent
import pytest
from gevent import socket, subprocess
from gevent.event import Event

from chatroom.codec import Decoder, encode
from chatroom.protocol import MAX_SERVER_BODY, Incoming, ListUsers, Response, SendTo, Status, UserList
from chatroom.testing import OK, ClientProcess, eventually, greet_as_old_server

pytestmark = pytest.mark.process


def test_login_success_then_failure_for_a_taken_name(client):
    assert client().run("login alice") == ["Success"]
    assert client().run("login alice") == ["Failure"]


@pytest.mark.parametrize("line", ["login", "login ", "login John Doe", "login " + "x" * 21])
def test_bad_usernames_for_login(client, line):
    c = client()
    assert c.run(line) == ["Bad username"]
    c.send("list", "bogus")  # nothing was sent: nobody is logged in
    assert c.read_line() == "Invalid command"


def test_list_prints_names_in_server_order_and_nothing_when_empty(client, connect):
    c = client()
    c.send("list", "bogus")  # an empty list prints nothing; the next line is the next answer
    assert c.read_line() == "Invalid command"
    for name in ["carol", "Bob", "alice"]:
        connect().login(name)
    c.send("list")
    assert c.read_lines(3) == ["Bob", "alice", "carol"]


@pytest.mark.parametrize("line", ["list bob", "logout Joe", "exit client", "help me", "LOGIN alice", "Login a", "foo"])
def test_invalid_commands(client, line):
    assert client().run(line) == ["Invalid command"]


def test_sendto_success_failure_and_delivery(client):
    alice, bob = client(), client()
    assert alice.run("login alice") == ["Success"]
    assert bob.run("login bob") == ["Success"]
    assert alice.run("sendto bob Hi how are you?") == ["Success"]
    assert bob.read_line() == "alice: Hi how are you?"
    assert alice.run("sendto nobody hello") == ["Failure"]


@pytest.mark.parametrize(
    "line",
    [
        "sendto",
        "sendto ",
        "sendto JohnHello",
        "sendto bob",
        "sendto bob ",
        "sendto bob    ",
        "sendto " + "x" * 21 + " hi",
    ],
)
def test_bad_username_for_sendto(client, line):
    assert client().run(line) == ["Bad username"]


def test_text_over_65535_characters_is_a_bad_message(client, connect):
    connect().login("bob")
    c = client()
    c.run("login alice")
    assert c.run("sendto bob " + "x" * 65536) == ["Bad message"]
    assert c.run("sendto bob " + "x" * 65535) == ["Success"]


def test_text_is_kept_as_typed(client, connect):
    bob = connect()
    bob.login("bob")
    alice = client()
    alice.run("login alice")
    assert alice.run("sendto bob  two  spaces  ") == ["Success"]
    assert bob.next_event() == Incoming("alice", " two  spaces  ")


def test_logout_keeps_the_connection(client):
    c = client()
    assert c.run("logout") == ["Failure"]
    assert c.run("login alice") == ["Success"]
    assert c.run("logout") == ["Success"]
    c.send("list", "login bob")
    assert c.read_line() == "Success"
    assert c.run("list") == ["bob"]


def test_exit_closes_and_frees_the_name(client, connect):
    c = client()
    c.run("login alice")
    c.send("exit", "list")
    assert c.finish() == (0, "", "")
    watcher = connect()
    eventually(lambda: watcher.request(ListUsers()) == UserList(()))


def test_end_of_input_is_exit(client):
    c = client()
    c.send("login alice", "list")
    c.proc.stdin.close()
    assert c.finish() == (0, "Success\nalice\n", "")


def test_blank_lines_and_crlf(client):
    c = client()
    c.proc.stdin.write(b"\n   \n\r\nlogin alice\r\nlist\r\n")
    c.proc.stdin.flush()
    assert c.read_lines(2) == ["Success", "alice"]


def test_messages_print_while_stdin_is_idle(client, connect):
    c = client()
    c.run("login bob")
    alice = connect()
    alice.login("alice")
    for i in range(3):
        assert alice.request(SendTo("bob", f"message {i}")) == OK
    assert c.read_lines(3) == ["alice: message 0", "alice: message 1", "alice: message 2"]


def test_untrusted_text_is_escaped(client, connect):
    c = client()
    c.run("login bob")
    alice = connect()
    alice.login("alice")
    text = "hi\nbob: fake line\r\x1b]0;pwned\x07\x1b[2J\x08\x7f\x85\u202eevil"
    assert alice.request(SendTo("bob", text)) == OK
    line = c.read_line()
    assert line == "alice: hi\\nbob: fake line\\r\\x1b]0;pwned\\x07\\x1b[2J\\x08\\x7f\\x85\\u202eevil"
    c.proc.stdin.close()
    assert c.finish() == (0, "", "")


def test_cannot_connect_is_one_line_and_status_one():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    result = subprocess.run(
        [sys.executable, "-m", "chatroom.client", "127.0.0.1", str(port)], capture_output=True, text=True, timeout=15
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "refused" in lines[0].lower()


def answering(answer):
    """A fake server's handler that sends answer(request) (bytes) for every request it reads."""

    def handler(sock):
        decoder = Decoder.for_server()
        while data := sock.recv(65536):
            for request in decoder.receive_data(data):
                sock.sendall(answer(request))

    return handler


def answer_every_frame(status):
    return answering(lambda _: encode(Response(status)))


def test_malformed_response_prints_malformed_packet(client, fake_server):
    server = fake_server(answer_every_frame(Status.MALFORMED))
    assert client(server.address).run("login alice", "list") == ["Malformed packet", "Malformed packet"]


def test_server_closing_the_connection_ends_the_client_with_an_error(client, fake_server):
    first_frame = Event()

    def handler(sock):
        greet_as_old_server(sock)
        sock.recv(100)
        sock.sendall(encode(Response(Status.OK)))
        first_frame.set()
        sock.recv(100)  # then the client is idle, stdin open
        sock.close()

    server = fake_server(handler)
    c = client(server.address)
    assert c.run("login alice") == ["Success"]
    c.send("list")
    status, out, err = c.finish(close_stdin=False)
    assert status != 0
    assert out == ""
    assert len(err.splitlines()) == 1 and "closed" in err


def test_server_closing_while_the_client_idles(client, fake_server):
    def handler(sock):
        gevent.sleep(0.2)
        sock.close()

    server = fake_server(handler)
    status, out, err = client(server.address).finish(close_stdin=False)
    assert status != 0 and len(err.splitlines()) == 1


def test_no_reply_in_ten_seconds_says_so_and_carries_on(client, fake_server):
    replies = []

    def handler(sock):
        greet_as_old_server(sock)
        decoder = Decoder.for_server()
        while data := sock.recv(65536):
            for event in decoder.receive_data(data):
                replies.append(event)
                if len(replies) == 1:
                    continue  # the first request goes unanswered...
                if len(replies) == 2:
                    sock.sendall(encode(Response(Status.OK)))  # ...and its reply comes late
                sock.sendall(encode(UserList(("late",))))

    server = fake_server(handler)
    c = client(server.address)
    c.send("login alice")
    err = gevent.with_timeout(15, c.proc.stderr.readline)
    assert b"no reply" in err
    assert c.run("list") == ["late"]


# --- Arguments, files and broken servers -----------------------------------------------------


def run_client(*args, stdin=b"", timeout=15):
    return subprocess.run(
        [sys.executable, "-m", "chatroom.client", *args], input=stdin, capture_output=True, timeout=timeout
    )


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_a_bad_port_is_a_usage_error_on_client_and_server(port):
    client = run_client("127.0.0.1", port)
    assert client.returncode == 2 and b"port" in client.stderr and b"Traceback" not in client.stderr
    if port != "0":
        server = subprocess.run(
            [sys.executable, "-m", "chatroom.server", "--port", port], capture_output=True, timeout=15
        )
        assert server.returncode == 2 and b"port" in server.stderr and b"Traceback" not in server.stderr


def test_a_lone_number_is_the_port(server):
    result = run_client(str(server.address[1]), stdin=b"login alice\nlist\n")
    assert result.returncode == 0 and result.stdout == b"Success\nalice\n"


def test_a_frame_over_the_limit_from_the_server_ends_the_client_clearly(fake_server):
    def oversize(sock):
        greet_as_old_server(sock)
        sock.recv(100)
        sock.sendall(struct.pack("!BI", 0x82, MAX_SERVER_BODY + 1))  # (a server's frames may be longer than a client's)
        sock.recv(100)

    server = fake_server(oversize)
    result = run_client(*map(str, server.address), stdin=b"login alice\nlist\n")
    assert result.returncode == 1
    assert result.stderr == b"chatroom-client: the server broke the chatroom protocol (a frame longer than allowed)\n"


def test_a_push_of_any_kind_from_the_server_never_breaks_the_client(fake_server):
    """A server may push any kind of frame, asked for or not (a hostile one, a newer one): each
    is shown or ignored, and the client goes on (PRESENCE-STATUS, which only a watcher gets,
    once ended its reader with a traceback)."""
    from chatroom.codec import PUSHED
    from chatroom.device_frames import Marked, OwnMessage, PresenceState, PresenceStatus, SessionEnded
    from chatroom.protocol import DirectMessage, Presence, StoredMessage
    from chatroom.room_frames import EventKind, RoomEvent, RoomMessage

    pushes = [
        Incoming("bob", "hi"),
        DirectMessage("bob", 7, 1, "direct"),
        StoredMessage("bob", 1, "kept", 8),
        Presence((("bob", True),)),
        RoomMessage("#r", "bob", 1, 1, "room"),
        RoomEvent("#r", EventKind.JOINED, "bob", ""),
        OwnMessage("bob", 9, 1, "mine"),
        Marked("bob", 9),
        PresenceStatus((("bob", PresenceState.AWAY, "out"),)),
        SessionEnded(),
    ]
    assert {type(push) for push in pushes} == set(PUSHED)  # (a kind added later is added here)

    def pushes_then_reply(request) -> bytes:
        reply = UserList(("bob",)) if type(request) is ListUsers else Response(Status.OK)
        return b"".join(map(encode, [*pushes, reply]))

    server = fake_server(answering(pushes_then_reply))
    result = run_client(*map(str, server.address), stdin=b"login alice\nlist\n")
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
    assert result.stdout.decode().splitlines()[-1] == "bob"


def test_a_time_past_the_calendar_from_the_server_is_shown_as_unknown(fake_server):
    """Times are 64-bit numbers of ms: a server may send one past year 9999, which the
    calendar cannot show (a ValueError, and a traceback, where a history page had one)."""
    from chatroom.protocol import HistoryEntry, HistoryPage, HistoryRequest

    def far_history(request) -> bytes:
        if type(request) is HistoryRequest:
            entries = (HistoryEntry(1, 2**63 - 1, True, "far"), HistoryEntry(2, 0, False, "epoch"))
            return encode(HistoryPage(request.peer, entries))
        return encode(Response(Status.OK))

    server = fake_server(answering(far_history))
    result = run_client(*map(str, server.address), stdin=b"login alice\nhistory bob\n")
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
    far, epoch = result.stdout.decode().splitlines()[-2:]
    assert far == "????-??-?? ??:?? me: far" and epoch.endswith(" bob: epoch")


def test_the_terminal_shows_a_time_past_the_calendar_as_unknown():
    from chatroom.client import screen

    assert screen._when(2**63 - 1) == "??:??" and screen._when(-(2**63)) == "??:??"


def test_a_hostile_server_never_makes_the_client_fail_with_a_traceback(fake_server):
    """Each request answered with a reply of any kind (often not the one asked for), with
    numbers at their limits, a push (often mutated) before it now and then: the client says
    what went wrong, or goes on, and never ends with a traceback."""
    import random

    from chatroom.device_frames import SessionEntry, SessionFlag, SessionList, UnreadCounts, UnreadEntry
    from chatroom.protocol import DirectMessage, HistoryEntry, HistoryPage, StoredMessage
    from chatroom.room_frames import MemberFlag, MemberList, RoomEntry, RoomFlag, RoomList, RoomMessage
    from chatroom.search_frames import Found, SearchResults

    rng = random.Random(20261207)

    def number():
        return rng.choice([0, 1, 2**31, 2**63 - 1, 2**64 - 1, 1_765_000_000_000])

    def replies() -> list[bytes]:
        return [
            encode(message)
            for message in (
                Response(Status.OK),
                Response(Status.FAILURE),
                Response(Status.REGISTERED),
                UserList(("a", "b\x1b[2J")),
                HistoryPage("bob", (HistoryEntry(number(), number(), True, "x\u202e"),)),
                SearchResults((Found(number(), number(), "#r", "bob", "hit"),)),
                RoomList((RoomEntry("#r", RoomFlag(rng.randrange(8)), number() % 2**32),)),
                MemberList("#r", "topic", (("bob", MemberFlag(rng.randrange(4))),)),
                SessionList((SessionEntry(rng.randrange(256), SessionFlag(rng.randrange(4)), number(), "tcp", "a"),)),
                UnreadCounts((UnreadEntry("bob", number(), number() % 2**32),)),
            )
        ]

    def pushes() -> list[bytes]:
        return [
            encode(message)
            for message in (
                DirectMessage("bob", number(), number(), "pushed"),
                RoomMessage("#r", "bob", number(), number(), "room"),
                StoredMessage("bob", number(), "kept", number()),
            )
        ]

    def mutated(frame: bytes) -> bytes:
        """Bytes of its body changed, its type and length kept (a frame cut short would only
        have the client wait for its reply, ten seconds a request)."""
        data = bytearray(frame)
        for _ in range(rng.randint(1, 3)):
            if len(data) > 5:
                data[rng.randrange(5, len(data))] = rng.randrange(256)
        return bytes(data)

    def any_reply(_request) -> bytes:
        # (A push, or a malformed frame, in a reply's place has the client wait ten seconds.)
        push = rng.choice(pushes()) if rng.random() < 0.5 else b""
        return (mutated(push) if rng.random() < 0.5 else push) + rng.choice(replies())

    server = fake_server(answering(any_reply))
    commands = ["login alice", "list", "sendto bob hi", "history bob", "search hit", "rooms", "members #r"]
    commands += ["join #r", "sessions", "sendto #r hey", "away", "back", "logout"]
    for _ in range(12):
        typed = "\n".join(rng.choice(commands) for _ in range(rng.randint(3, 8))) + "\nexit\n"
        result = run_client("--no-reconnect", "--timestamps", *map(str, server.address), stdin=typed.encode())
        assert b"Traceback" not in result.stderr + result.stdout, (typed, result.stderr)


def test_a_closed_stdout_ends_quietly(server):
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatroom.client", *map(str, server.address)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(b"login alice\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"Success\n"
    proc.stdout.close()  # like `| head -1`
    proc.stdin.write(b"list\n" * 2000)
    proc.stdin.close()
    assert proc.wait(15) == 0
    err = proc.stderr.read()
    proc.stderr.close()
    assert b"Traceback" not in err and b"Broken pipe" not in err


@pytest.mark.parametrize("content, reason", [(None, b"not found"), (b"not a certificate\n", b"no certificate in it")])
def test_a_bad_ca_file_is_named(server, tmp_path, content, reason):
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    result = run_client("--tls", "--ca", str(ca), *map(str, server.address))
    assert result.returncode == 1
    assert result.stderr == b"chatroom-client: cannot use the CA file " + str(ca).encode() + b": " + reason + b"\n"


def test_no_tls_hint_when_the_server_refuses_for_being_full(server_process):
    server = server_process("--max-clients", "0")
    result = run_client(*map(str, server.address), stdin=b"login alice\n")
    assert result.returncode == 1 and b"tls" not in result.stderr.lower()


def test_no_tls_hint_after_a_normal_shutdown(server_process):
    server = server_process()
    client = ClientProcess(server.address)
    try:
        assert client.run("login alice") == ["Success"]
        server.signal()
        status, _, err = client.finish(close_stdin=False)
        assert status == 1 and "closed the connection" in err and "tls" not in err.lower()
    finally:
        client.stop()


def test_only_loopback_hosts_are_exempt_from_the_password_warning():
    from chatroom.client.cli import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["10.0.0.1", "192.168.1.5", "chat.example.org", "2001:db8::1"]))
