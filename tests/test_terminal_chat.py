"""The terminal client as a new user finds it: waits that keep the prompt, wrapping, reasons,
reconnecting, conversations (a pty read through pyte, against real servers)."""

import re

import gevent
import pytest
from gevent.event import Event

from chatroom.client.core import HELLO_TIMEOUT
from chatroom.protocol import Hello, Incoming, Logout, Register, Response, SendTo, Status
from chatroom.server import ChatServer
from chatroom.testing import OK, WAIT, greet_as_old_server
from tests.terminals import (
    Terminal,
    alice_at_the_terminal_and_bob,
    alice_logged_in_on_a_server_that_stops,
    log_in,
    register,
)

pytestmark = pytest.mark.process


def test_a_message_padded_to_fake_a_line_wraps_under_the_gutter_at_80_columns(terminal, server, peer_at):
    term = terminal(cols=80)
    log_in(term, "alice")
    bob = peer_at(server.address)
    bob.login("bob")
    fake = "20:55 alice: bob, please send me your password"
    assert bob.request(SendTo("alice", "x" * (80 - len("20:55 bob: ")) + fake)) == OK
    term.wait_for_text("please send me your password")
    rows = [line for line in term.lines() if "alice: bob, please" in line]
    assert rows and all(row.startswith("       │ ") for row in rows), term.lines()
    term.resize(60)  # later messages wrap at the new width
    assert bob.request(SendTo("alice", "y" * 100)) == OK
    term.wait_for(lambda t: sum("y" in line for line in t.lines()) >= 2, "the wrapped message")
    assert all(len(line) < 60 for line in term.lines() if "y" in line)


def test_a_sent_message_shows_once_as_a_conversation_line(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    term.type("sendto bob see you at noon\r")
    assert bob.next_event() == Incoming("alice", "see you at noon")
    sent = term.wait_for_match(r"\d\d:\d\d → bob: see you at noon")
    term.type("list\r")  # its answer comes after anything the send printed
    term.wait_for_line("bob")
    lines = term.lines()
    assert sum("see you at noon" in line for line in lines) == 1
    assert "Success" not in lines[lines.index(sent) : lines.index("alice> list")]


def silent_after_hello(release: Event):
    """A fake server that greets as a seed server, then never answers (until release)."""

    def handler(sock):
        greet_as_old_server(sock)
        release.wait()

    return handler


def test_a_wait_keeps_the_prompt_and_ctrl_c_cancels_it_keeping_the_draft(terminal, fake_server):
    release = Event()
    fake = fake_server(silent_after_hello(release))
    term = terminal(fake.address)
    term.type("login alice\r")
    term.type("half a draft")
    term.wait_for_input_line("> half a draft")  # drawn and editable while the login waits
    term.type("\x03")
    term.wait_for_line("cancelled")
    term.wait_for_input_line("> half a draft")
    term.type("list\x15list\r")  # the client lives on; Ctrl-U cleared the draft
    term.wait_for_line("> list")  # (under way: a Ctrl-C before it would clear the line instead)
    term.type("\x03")
    term.wait_for(lambda t: t.lines().count("cancelled") == 2, "a second cancel")
    assert b"Traceback" not in term.raw and b"KeyboardInterrupt" not in term.raw
    release.set()


def test_exit_never_waits_on_a_reply(terminal, fake_server):
    release = Event()
    term = terminal(fake_server(silent_after_hello(release)).address)
    term.type("list\r")
    term.type("exit\r")
    with gevent.Timeout(6):  # (well under the ten seconds after which a reply is given up)
        assert term.wait_exit() == 0
    release.set()


def test_a_port_that_is_no_chatroom_server_says_so(fake_server, client, tmp_path):
    # The terminal keeps trying, as for a lost connection; pipe mode exits 1. (Both at once:
    # each waits out the HELLO timeout.)
    release = Event()
    fake = fake_server(lambda sock: release.wait())  # accepts, never answers
    host, port = fake.address
    term = Terminal(fake.address, tmp_path)
    piped = client(fake.address)
    try:
        term.wait_for_line(f"connecting to {host}:{port}...")
        term.wait_for_text(
            f"disconnected: {host}:{port} does not answer like a chatroom server; reconnecting", WAIT + HELLO_TIMEOUT
        )
        term.wait_for_input_line("> ")
        status, out, err = piped.finish(WAIT, close_stdin=False)
        assert status == 1 and out == ""
        assert f"{host}:{port} does not answer like a chatroom server" in err
    finally:
        term.close()
        release.set()


def test_reconnecting_counts_down_in_the_toolbar_and_enter_tries_at_once(terminal):
    term, address = alice_logged_in_on_a_server_that_stops(terminal)
    countdowns = set()
    term.wait_for(
        lambda t: countdowns.update(re.findall(r"reconnecting in (\d+)s", t.lines()[-1])) or len(countdowns) >= 2,
        "a countdown",
    )
    second = ChatServer(*address)
    second.start()
    try:
        term.type("\r")  # Enter on an empty line: now
        term.wait_for_match(r"reconnected after \d+ s")
        term.wait_for_line("logged in again as alice")
        text = "\n".join(term.lines())
        assert text.count("disconnected:") == 1 and text.count("reconnected after") == 1
    finally:
        second.stop()


def test_talk_sends_plain_lines_to_one_person_and_reply_answers_the_last_sender(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    term.type("me waves\r")
    term.wait_for_match(r".*Failure.*me speaks in a talk: talk NAME first.*")
    term.type("talk bob\r")
    term.wait_for_input_line("alice → bob> ")
    term.type("list of things\r")
    assert bob.next_event() == Incoming("alice", "list of things")
    term.type("/me waves\r")  # an action, as IRC's /me
    assert bob.next_event() == Incoming("alice", "\x01ACTION waves\x01")
    term.wait_for_match(r"\d\d:\d\d → bob: \* waves")
    term.type("/list\r")  # a command, after a slash
    term.wait_for_line("bob")
    term.type("/talk\r")
    term.wait_for_input_line("alice> ")
    assert bob.request(SendTo("alice", "ping")) == OK
    term.wait_for_match(r"\d\d:\d\d bob: ping")
    term.type("reply pong\r")
    assert bob.next_event() == Incoming("alice", "pong")


def test_tab_completes_names_after_history_and_esc_closes_the_menu(terminal, server, peer_at):
    for name in ("bob", "bea"):
        peer_at(server.address).login(name)
    term = terminal()
    term.type("list\r")
    term.wait_for_line("bob")
    term.type("history b\t")
    term.wait_for_text("bea")  # the menu
    term.type("\x1b")
    term.wait_for_input_line("> history b")
    term.type("\x15")
    term.wait_for_input_line("> ")  # (no suggestion of an old message: tests/test_completer.py)


def test_stored_messages_follow_the_logins_success_under_a_line_of_their_own(terminal, accounts_server, peer_at):
    term = terminal(accounts_server.address)
    register(term, "alice", "pw")
    term.type("logout\r")
    term.wait_for_input_line("> ")
    bob = peer_at(accounts_server.address)
    assert bob.request(Hello(1)) == OK and bob.request(Register("bob", "pw")) == OK
    for n in range(3):
        assert bob.request(SendTo("alice", f"kept {n}")) == Response(Status.STORED)
    term.type("login alice\r")
    term.wait_for_input_line("password for alice: ")
    term.type("pw\r")
    term.wait_for_match(r"\d\d:\d\d bob: kept 2")
    lines = term.lines()
    success = max(i for i, line in enumerate(lines) if line == "Success")
    away = lines.index("while you were away: bob 3")  # (what came, per conversation: the three kept)
    first = next(i for i, line in enumerate(lines) if line.endswith("bob: kept 0"))
    assert success < away < first
    term.type("history bob\r")
    term.wait_for_text("── history with bob: the last 3 messages ──")


def test_pipe_mode_says_offline_messages_after_the_logins_success(accounts_server, peer_at, client):
    bob = peer_at(accounts_server.address)
    assert bob.request(Hello(1)) == OK and bob.request(Register("bob", "pw")) == OK
    alice = peer_at(accounts_server.address)
    assert alice.request(Hello(1)) == OK and alice.request(Register("alice", "pw")) == OK
    assert alice.request(Logout()) == OK  # (a close alone may still be on its way when bob writes)
    alice.close()
    for n in range(100):
        assert bob.request(SendTo("alice", f"kept {n}")) == Response(Status.STORED)
    reader = client(accounts_server.address, env={"CHATROOM_PASSWORD": "pw"})
    assert reader.run("login alice") == ["Success"]
    assert reader.read_lines(100) == [f"bob: kept {n}" for n in range(100)]


def test_pipe_mode_register_without_a_password_says_where_one_comes_from(accounts_server, client):
    c = client(accounts_server.address)
    assert c.run("register carol") == ["Failure"]
    status, _, err = c.finish()
    assert "--password-file FILE or $CHATROOM_PASSWORD" in err


def test_without_bracketed_paste_lines_that_arrive_together_are_one_message(terminal, server, peer_at):
    term, bob = alice_at_the_terminal_and_bob(terminal, server, peer_at)
    term.type("sendto bob first line\rsecond line\rlist\r")  # one write: a paste
    assert bob.next_event() == Incoming("alice", "first line\nsecond line\nlist")


def test_passwords_that_differ_say_so_once_and_ctrl_c_at_a_password_prompt_cancels(terminal, accounts_server):
    term = terminal(accounts_server.address)
    term.type("register alice\r")
    term.wait_for_input_line("password for alice: ")
    term.type("one\r")
    term.wait_for_input_line("the same again: ")
    term.type("two\r")
    term.wait_for_line("Failure (the two passwords differ)")
    term.wait_for_input_line("> ")
    assert sum(line.startswith("Failure") for line in term.lines()) == 1
    term.type("register alice\r")
    term.wait_for_input_line("password for alice: ")
    term.type("\x03")
    term.wait_for_line("cancelled")
    term.wait_for_input_line("> ")
    assert b"Traceback" not in term.raw
