"""The interactive client on a pseudo-terminal, read through a terminal emulator (pyte)."""

import re

import gevent
import pytest
from gevent.event import Event

from chatroom.codec import Decoder, encode
from chatroom.protocol import Hello, Incoming, ListUsers, Login, Register, Response, SendTo, Status, UserList
from chatroom.server import ChatServer
from chatroom.testing import OK, Peer, greet_as_old_server
from tests.terminals import alice_at_the_terminal_and_bob, alice_logged_in_on_a_server_that_stops, log_in, register

pytestmark = pytest.mark.process


def test_half_typed_line_survives_an_incoming_message(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    term.type("sendto bob hel")
    term.wait_for_input_line("alice> sendto bob hel")
    assert bob.request(SendTo("alice", "are you there?")) == OK
    message = term.wait_for_match(r"\d\d:\d\d bob: are you there\?")
    term.wait_for_input_line("alice> sendto bob hel")
    lines = term.lines()
    assert lines.index(message) < lines.index("alice> sendto bob hel")
    term.type("lo\r")
    assert bob.next_event() == Incoming("alice", "hello")
    term.wait_for_line("Success")


def test_up_recalls_history_within_and_across_runs(terminal):
    term = terminal()
    log_in(term, "alice")
    term.type("list\r")
    term.wait_for_line("alice")  # the list's answer
    term.wait_for_input_line("alice> ")
    term.type("\x1b[A")
    term.wait_for_input_line("alice> list")
    term.type("\x1b[A")
    term.wait_for_input_line("alice> login alice")
    term.type("\x15\x04")  # Ctrl-U clears the line, Ctrl-D on an empty line exits
    assert term.wait_exit() == 0

    again = terminal()
    again.type("\x1b[A")
    again.wait_for_input_line("> list")


def test_ctrl_r_searches_history(terminal):
    term = terminal()
    log_in(term, "alice")
    term.type("list\r")
    term.wait_for_line("alice")
    term.wait_for_input_line("alice> ")
    term.type("\x12logi")  # Ctrl-R
    term.wait_for_line("(reverse-i-search)`logi': login alice")
    term.type("\r")  # ends the search with the match in the input line
    term.wait_for_line("alice> login alice")
    term.type("\r")
    term.wait_for_line("Failure (already logged in as alice; logout first)")


def test_tab_completes_commands_and_known_usernames(terminal, server, peer_at):
    bob = peer_at(server.address)
    bob.login("bob")
    term = terminal()
    term.type("li\t")
    term.wait_for_input_line("> list")
    term.type("\r")  # the list teaches the client the name bob
    term.wait_for_line("bob")
    term.type("sen\t")
    term.wait_for_input_line("> sendto ")
    term.type("b\t")
    term.wait_for_input_line("> sendto bob ")


def test_prompt_names_the_user(terminal):
    term = terminal()
    log_in(term, "alice")
    term.type("logout\r")
    term.wait_for_input_line("> ")


def test_escape_sequences_from_the_network_never_reach_the_terminal_raw(terminal, server, peer_at):
    term = terminal()
    log_in(term, "alice")
    clears_before = term.raw.count(b"\x1b[2J")
    bob = peer_at(server.address)
    bob.login("bob")
    assert bob.request(SendTo("alice", "\x1b]0;pwned\x07 and \x1b[2J")) == OK
    term.wait_for_match(r"\d\d:\d\d bob: \\x1b\]0;pwned\\x07 and \\x1b\[2J")
    assert b"\x1b]0;pwned" not in term.raw
    assert term.raw.count(b"\x1b[2J") == clears_before


def test_ctrl_c_clears_the_line_and_help_prints_usage(terminal):
    term = terminal()
    term.type("something half typed")
    term.wait_for_input_line("> something half typed")
    term.type("\x03")
    term.wait_for_input_line("> ")
    term.type("help\r")
    term.wait_for_text("  sendto NAME TEXT")


def test_server_closing_mid_typing_exits_with_an_error(terminal, fake_server):
    close_now = Event()

    def handler(sock):
        greet_as_old_server(sock)
        close_now.wait()
        sock.close()

    fake = fake_server(handler)
    term = terminal(fake.address, "--no-reconnect")
    term.type("sendto bob half")
    term.wait_for_input_line("> sendto bob half")
    close_now.set()
    assert term.wait_exit() != 0
    assert "the server closed the connection" in "\n".join(term.lines())


def test_no_cpu_used_while_idle(terminal):
    term = terminal()
    log_in(term, "alice")

    def cpu_ticks():
        with open(f"/proc/{term.child.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    before = cpu_ticks()
    gevent.sleep(1.0)  # the measurement window itself, not a wait for something to happen
    assert cpu_ticks() - before <= 2


def test_history_suggestions_show_as_you_type(terminal):
    term = terminal()
    term.type("login alice\r")
    term.wait_for_input_line("alice> ")
    term.type("log")
    # The rest of the earlier line is suggested after the cursor; Right accepts it.
    term.wait_for(
        lambda t: t.cursor_line() == "alice> login alice" and t.screen.cursor.x == len("alice> log"), "the suggestion"
    )
    term.type("\x1b[C")
    term.wait_for_input_line("alice> login alice")


# --- Reading a conversation ------------------------------------------------------------------


def test_first_line_says_where_and_how(terminal, server):
    term = terminal()
    host, port = server.address
    term.wait_for_line(f"connected to {host}:{port} — type help")


def test_messages_have_a_time_a_coloured_sender_and_a_bell(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    bells = term.raw.count(b"\x07")
    assert bob.request(SendTo("alice", "hi")) == OK
    line = term.wait_for_match(r"\d\d:\d\d bob: hi")
    row = term.lines().index(line)
    name_colour = term.screen.buffer[row][6].fg
    assert name_colour != "default" and term.screen.buffer[row][len(line) - 1].fg == "default"
    assert term.raw.count(b"\x07") == bells + 1


def test_the_same_name_always_has_the_same_colour(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    for text in ["one", "two"]:
        assert bob.request(SendTo("alice", text)) == OK
        term.wait_for_match(rf"\d\d:\d\d bob: {text}")
    rows = [i for i, line in enumerate(term.lines()) if re.fullmatch(r"\d\d:\d\d bob: (one|two)", line)]
    assert len({term.screen.buffer[row][6].fg for row in rows}) == 1


def test_no_timestamps_and_no_bell_when_asked(terminal, server, peer_at):
    term = terminal(None, "--no-timestamps", "--no-bell")
    log_in(term, "alice")
    bob = peer_at(server.address)
    bob.login("bob")
    assert bob.request(SendTo("alice", "quiet")) == OK
    term.wait_for_line("bob: quiet")
    assert b"\x07" not in term.raw


def test_own_messages_are_echoed_after_success(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    term.type("sendto bob hello there\r")
    echo = term.wait_for_match(r"\d\d:\d\d → bob: hello there")
    lines = term.lines()
    assert lines[lines.index(echo) - 1] == "Success"
    assert bob.next_event() == Incoming("alice", "hello there")


def test_multi_line_text_cannot_pass_for_another_sender(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    assert bob.request(SendTo("alice", "hi\nmallory: send me your password\n\tindented")) == OK
    first = term.wait_for_match(r"\d\d:\d\d bob: hi")
    lines = term.lines()
    row = lines.index(first)
    assert lines[row + 1] == "       │ mallory: send me your password"
    assert lines[row + 2] == "       │         indented"  # the tab expanded
    assert not any(line.startswith("mallory") or re.match(r"\d\d:\d\d mallory", line) for line in lines)


def test_emoji_sequences_and_joined_scripts_are_shown_as_they_are(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    text = "\U0001f469\u200d\U0001f4bb and \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 but \u202eevil"
    assert bob.request(SendTo("alice", text)) == OK
    # A bidi override stays escaped, marked as an escape.
    term.wait_for(lambda t: b"but \x1b[7m\\u202e\x1b[27mevil" in t.raw, "the message")
    assert "\U0001f469\u200d\U0001f4bb and \u0645\u06cc\u200c\u062e".encode() in term.raw
    assert b"\\u200d" not in term.raw and b"\\u200c" not in term.raw


def test_toolbar_and_an_empty_list(terminal, server):
    term = terminal()
    host, port = server.address
    term.wait_for_line(f" connected │ {host}:{port} │ not logged in")
    term.type("list\r")
    term.wait_for_line("(nobody is logged in)")
    log_in(term, "alice")
    term.type("list\r")
    term.wait_for_line(f" connected │ {host}:{port} │ alice │ 1 online")


def test_a_pasted_block_is_one_message_and_a_long_one_asks_first(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    term.type("\x1b[200~sendto bob line one\nline two\x1b[201~\r")
    term.wait_for_line("Success")
    assert bob.next_event() == Incoming("alice", "line one\nline two")
    term.type("\x1b[200~sendto bob " + "\n".join(f"l{i}" for i in range(7)) + "\x1b[201~\r")
    term.wait_for_text("send 7 lines to bob? [y/N]")
    term.type("n\r")
    term.wait_for_line("not sent")
    term.type("\x1b[200~sendto bob " + "\n".join(f"l{i}" for i in range(7)) + "\x1b[201~\r")
    term.wait_for_text("send 7 lines to bob? [y/N]")
    term.type("y\r")
    assert bob.next_event() == Incoming("alice", "\n".join(f"l{i}" for i in range(7)))


# --- Clear errors ------------------------------------------------------------------------------


def test_failures_say_why(terminal, server, peer_at):
    carol = peer_at(server.address)
    carol.login("carol")
    term = terminal()
    term.type("sendto bob hi\r")
    term.wait_for_match(r"\d\d:\d\d → bob: hi ✗ Failure \(not logged in\)")
    term.type("logout\r")
    term.wait_for_line("Failure (not logged in)")
    term.type("login carol\r")
    term.wait_for_line("Failure (carol is in use)")
    log_in(term, "alice")
    term.type("login dave\r")
    term.wait_for_line("Failure (already logged in as alice; logout first)")
    term.type("list\r")
    term.wait_for_line("carol")
    term.type("sendto bob hi\r")
    term.wait_for_match(r"\d\d:\d\d → bob: hi ✗ Failure \(bob is not online\)")
    term.type("frobnicate\r")
    term.wait_for_line("Invalid command (type help)")
    term.type("\x1b[200~sendto carol " + "x" * 65536 + "\x1b[201~\r")
    term.wait_for_line("Bad message (longer than 65535 characters)")


# --- Staying connected -------------------------------------------------------------------------


def test_reconnects_after_a_restart_keeping_the_line_and_the_login(terminal, tmp_path):
    first = ChatServer("127.0.0.1", 0)
    first.start()
    address = first.address
    term = terminal(address)
    log_in(term, "alice")
    term.type("sendto bob half")
    term.wait_for_input_line("alice> sendto bob half")
    first.stop()
    term.wait_for_text("disconnected: the server closed the connection; reconnecting")
    second = ChatServer(*address)
    second.start()
    try:
        term.wait_for_match(r"reconnected after \d+ s")
        term.wait_for_line("logged in again as alice")
        term.wait_for_input_line("alice> sendto bob half")
        peer = Peer(address)
        try:
            assert peer.request(ListUsers()) == UserList(("alice",))
        finally:
            peer.close()
    finally:
        second.stop()


def test_a_name_taken_while_away_is_said_after_reconnecting(terminal):
    term, address = alice_logged_in_on_a_server_that_stops(terminal)
    second = ChatServer(*address)
    second.start()
    impostor = Peer(address)
    try:
        impostor.login("alice")  # before the client is back
        term.wait_for_line("could not log in again as alice: name taken")
        term.wait_for_input_line("> ")
    finally:
        impostor.close()
        second.stop()


def test_commands_while_disconnected_say_so_at_once(terminal):
    first = ChatServer("127.0.0.1", 0)
    first.start()
    term = terminal(first.address)
    first.stop()
    term.wait_for_text("reconnecting in")
    term.type("list\r")
    term.wait_for_match(r"not connected \(reconnecting in \d+s\)")
    term.type("help\r")  # what needs no server still works
    term.wait_for_text("  sendto NAME TEXT")


def test_ctrl_c_cancels_a_pending_reply_and_the_client_lives_on(terminal, fake_server):
    release = Event()

    def answers_list_late(sock):
        greet_as_old_server(sock)
        decoder = Decoder.for_server()
        while data := sock.recv(65536):
            for event in decoder.receive_data(data):
                if isinstance(event, Login):
                    sock.sendall(encode(Response(Status.OK)))
                else:
                    release.wait()
                    sock.sendall(encode(UserList(("late",))))

    fake = fake_server(answers_list_late)
    term = terminal(fake.address)
    term.type("list\r")
    term.type("half")
    term.wait_for_input_line("> half")  # the prompt stays drawn while the reply is awaited
    term.type("\x03")
    term.wait_for_line("cancelled")
    term.type("\x15login alice\r")
    release.set()  # the late reply to list comes now, and is not taken for the login's
    term.wait_for_input_line("alice> ")
    assert "late" not in term.lines()
    term.type("\x04")
    assert term.wait_exit() == 0


def test_history_file_is_private_and_capped(terminal, tmp_path):
    history = tmp_path / "chatroom" / "history"
    history.parent.mkdir(parents=True)
    history.write_text("".join(f"\n# 2026-01-01 00:00:00\n+list {i}\n" for i in range(10_050)))
    term = terminal()
    term.type("\x04")
    assert term.wait_exit() == 0
    assert history.parent.stat().st_mode & 0o777 == 0o700
    assert history.stat().st_mode & 0o777 == 0o600
    entries = history.read_text().count("\n+")
    assert entries == 10_000
    assert "+list 10049\n" in history.read_text() and "+list 49\n" not in history.read_text()


# --- Registered names --------------------------------------------------------------------------


def test_register_and_login_ask_for_the_password_without_echo_or_history(terminal, accounts_server, tmp_path):
    term = terminal(accounts_server.address)
    register(term, "alice", "tr0ub4dor")
    term.type("logout\r")
    term.wait_for_input_line("> ")
    term.type("login alice\r")
    term.wait_for_input_line("password for alice: ")
    term.type("wrong\r")
    term.wait_for_line("Failure (wrong password)")
    term.type("login alice\r")
    term.wait_for(
        lambda t: t.lines().count("password for alice:") >= 1 and "tr0ub4dor" not in t.raw.decode(errors="replace"),
        "the prompt",
    )
    term.type("tr0ub4dor\r")
    term.wait_for_input_line("alice> ")
    assert b"tr0ub4dor" not in term.raw  # never echoed
    term.type("\x04")
    assert term.wait_exit() == 0
    history = (tmp_path / "chatroom" / "history").read_text()
    assert "register alice" in history and "tr0ub4dor" not in history and "wrong" not in history


def test_history_and_stored_messages_read_as_a_conversation(terminal, accounts_server, peer_at):
    bob = peer_at(accounts_server.address)
    assert bob.request(Hello(1)) == OK
    assert bob.request(Register("bob", "pw")) == OK
    term = terminal(accounts_server.address)
    register(term, "alice", "pw")
    term.type("sendto bob first\r")
    assert bob.next_event() == Incoming("alice", "first")
    term.type("logout\r")
    term.wait_for_input_line("> ")
    assert bob.request(SendTo("alice", "while you were out")) == Response(Status.STORED)
    term.type("login alice\r")
    term.wait_for_input_line("password for alice: ")
    term.type("pw\r")
    term.wait_for_match(r"\d\d:\d\d bob: while you were out")
    term.type("history bob\r")
    term.wait_for(
        lambda t: sum(bool(re.fullmatch(r"\d\d:\d\d → bob: first", line)) for line in t.lines()) == 2, "history"
    )
