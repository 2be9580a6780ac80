"""The interactive client on a pseudo-terminal, read through a terminal emulator (pyte)."""

import os
import sys

import gevent
import pexpect
import pyte
import pytest
from gevent.event import Event
from gevent.select import select

from chatroom.protocol import Incoming, SendTo
from chatroom.testing import OK, WAIT

pytestmark = pytest.mark.process

ROWS, COLS = 24, 100


class Terminal:
    """chatroom-client on a pty; the screen is what a person would see."""

    def __init__(self, address, state_dir):
        env = dict(
            os.environ,
            TERM="xterm",
            PROMPT_TOOLKIT_NO_CPR="1",
            XDG_STATE_HOME=str(state_dir),
            PYTHONUNBUFFERED="1",
        )
        host, port = address
        self.child = pexpect.spawn(
            sys.executable, ["-m", "chatroom.client", host, str(port)], env=env, dimensions=(ROWS, COLS)
        )
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.eof = False

    def _pump(self, timeout):
        select([self.child.child_fd], [], [], timeout)  # cooperative: servers in this process keep running
        try:
            data = self.child.read_nonblocking(65536, timeout=0)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            self.eof = True
            return
        self.raw += data
        self.stream.feed(data)

    def lines(self):
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, check, what):
        """Pump output until check(self) holds; fail with the screen after WAIT seconds."""
        with gevent.Timeout(WAIT, False):
            while not check(self):
                if self.eof:
                    break
                self._pump(0.05)
            else:
                return
        pytest.fail(f"never saw {what}; screen:\n" + "\n".join(self.lines()))

    def wait_for_line(self, text):
        self.wait_for(lambda t: text in t.lines(), repr(text))

    def cursor_line(self):
        return self.lines()[self.screen.cursor.y]

    def wait_for_input_line(self, text):
        """The line with the cursor reads text, and the cursor is at its end."""
        self.wait_for(
            lambda t: t.cursor_line() == text.rstrip() and t.screen.cursor.x == len(text), f"the input line {text!r}"
        )

    def type(self, keys):
        self.child.send(keys)

    def wait_exit(self):
        self.wait_for(lambda t: t.eof, "the client exit")
        self.child.close()
        return self.child.exitstatus

    def close(self):
        self.child.close(force=True)


@pytest.fixture
def terminal(server, tmp_path):
    started = []

    def start(address=None):
        term = Terminal(address or server.address, tmp_path)
        started.append(term)
        term.wait_for_input_line("> ")
        return term

    yield start
    for term in started:
        term.close()


def log_in(term, name):
    term.type(f"login {name}\r")
    term.wait_for_input_line(f"{name}> ")


def test_half_typed_line_survives_an_incoming_message(terminal, server, peer_at):
    term = terminal()
    log_in(term, "alice")
    bob = peer_at(server.address)
    bob.login("bob")
    term.type("sendto bob hel")
    term.wait_for_input_line("alice> sendto bob hel")
    assert bob.request(SendTo("alice", "are you there?")) == OK
    term.wait_for_line("bob: are you there?")
    term.wait_for_input_line("alice> sendto bob hel")
    lines = term.lines()
    assert lines.index("bob: are you there?") < lines.index("alice> sendto bob hel")
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
    term.wait_for_line("Failure")  # logged in already


def test_tab_completes_commands_and_known_usernames(terminal, server, peer_at):
    bob = peer_at(server.address)
    bob.login("bob")
    term = terminal()
    term.type("li\t")
    term.wait_for_input_line("> list")
    term.type("\r")  # the list teaches the client the name bob
    term.wait_for_line("bob")
    term.type("se\t")
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
    term.wait_for_line("bob: \\x1b]0;pwned\\x07 and \\x1b[2J")
    assert b"\x1b]0;pwned" not in term.raw
    assert term.raw.count(b"\x1b[2J") == clears_before


def test_ctrl_c_clears_the_line_and_help_prints_usage(terminal):
    term = terminal()
    term.type("something half typed")
    term.wait_for_input_line("> something half typed")
    term.type("\x03")
    term.wait_for_input_line("> ")
    term.type("help\r")
    term.wait_for_line("  sendto NAME TEXT   send TEXT to NAME")


def test_server_closing_mid_typing_exits_with_an_error(terminal, fake_server):
    close_now = Event()

    def handler(sock):
        close_now.wait()
        sock.close()

    fake = fake_server(handler)
    term = terminal(fake.address)
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
