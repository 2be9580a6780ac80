"""The interactive client on a pseudo-terminal, read through a terminal emulator (pyte): the
helpers the terminal tests share."""

import os
import re
import sys

import gevent
import gevent.os
import pexpect
import ptyprocess
import pyte
import pytest
from gevent.select import select

from chatroom.testing import WAIT

ROWS, COLS = 30, 100  # (room for the whole help)


class _AnsweringScreen(pyte.Screen):
    """A screen that answers the terminal's queries (the cursor position prompt_toolkit asks
    for, to know how much room there is below the prompt for its toolbar)."""

    def __init__(self, columns, lines, child):
        super().__init__(columns, lines)
        self._child = child

    def write_process_input(self, data):
        self._child.send(data)


class Terminal:
    """chatroom-client on a pty; the screen is what a person would see."""

    def __init__(self, address, state_dir, *args, cols=COLS):
        env = dict(
            os.environ,
            TERM="xterm",
            XDG_STATE_HOME=str(state_dir),
            PYTHONUNBUFFERED="1",
        )
        host, port = address
        self.child = pexpect.spawn(
            sys.executable, ["-m", "chatroom.client", host, str(port), *args], env=env, dimensions=(ROWS, cols)
        )
        self.screen = _AnsweringScreen(cols, ROWS, self.child)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.eof = False

    def _pump(self, timeout):
        select([self.child.child_fd], [], [], timeout)  # cooperative: servers in this process keep running
        try:
            data = self.child.read_nonblocking(65536, timeout=0)
        except pexpect.TIMEOUT:
            return
        except (pexpect.ExceptionPexpect, ptyprocess.PtyProcessError):
            # (EOF, or the hub's child watcher reaped the client before pexpect could, which
            # pexpect raises either bare or wrapped in its own exception; the status waits for
            # gevent's waitpid, see wait_exit.)
            self.eof = True
            return
        self.raw += data
        self.stream.feed(data)

    def lines(self):
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, check, what, timeout=WAIT):
        """Pump output until check(self) holds; fail with the screen after timeout seconds."""
        with gevent.Timeout(timeout, False):
            while not check(self):
                if self.eof:
                    break
                self._pump(0.05)
            else:
                return
        pytest.fail(f"never saw {what}; screen:\n" + "\n".join(self.lines()))

    def wait_for_line(self, text):
        self.wait_for(lambda t: text in t.lines(), repr(text))

    def wait_for_match(self, pattern) -> str:
        """The first screen line that matches the regular expression, once there is one."""
        regex = re.compile(pattern)
        self.wait_for(lambda t: any(regex.fullmatch(line) for line in t.lines()), f"a line matching {pattern!r}")
        return next(line for line in self.lines() if regex.fullmatch(line))

    def wait_for_text(self, text, timeout=WAIT):
        self.wait_for(lambda t: text in "\n".join(t.lines()), repr(text), timeout)

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
        """The client's exit status, once it has exited. Through gevent's waitpid: when this
        process runs other children, the hub reaps every child that exits and keeps its status
        for that call (pexpect's own waitpid would find none)."""
        self.wait_for(lambda t: t.eof, "the client exit")
        process = self.child.ptyproc
        if not process.terminated:  # (pexpect did not reap it itself)
            with gevent.Timeout(WAIT):
                _, status = gevent.os.waitpid(self.child.pid, 0)
            process.terminated, process.exitstatus = True, os.waitstatus_to_exitcode(status)
        self.close()
        return process.exitstatus

    def resize(self, cols):
        self.child.setwinsize(ROWS, cols)
        self.screen.resize(ROWS, cols)

    def close(self):
        try:
            self.child.close(force=True)
        except (pexpect.ExceptionPexpect, ptyprocess.PtyProcessError, OSError):
            pass  # reaped already (see wait_exit)


def log_in(term, name):
    term.type(f"login {name}\r")
    term.wait_for_input_line(f"{name}> ")


def alice_at_the_terminal_and_bob(terminal, server, peer_at):
    """A terminal logged in as alice, and a raw peer logged in as bob."""
    term = terminal()
    log_in(term, "alice")
    bob = peer_at(server.address)
    bob.login("bob")
    return term, bob


def register(term, name, password):
    term.type(f"register {name}\r")
    term.wait_for_input_line(f"password for {name}: ")
    term.type(f"{password}\r")
    term.wait_for_input_line("the same again: ")
    term.type(f"{password}\r")
    term.wait_for_input_line(f"{name}> ")


def alice_logged_in_on_a_server_that_stops(terminal):
    """A terminal logged in as alice on an in-process server, which then stops: (the terminal,
    the server's address, for a second server to take)."""
    from chatroom.server import ChatServer

    first = ChatServer("127.0.0.1", 0)
    first.start()
    term = terminal(first.address)
    log_in(term, "alice")
    first.stop()
    term.wait_for_text("disconnected: the server closed the connection; reconnecting")
    return term, first.address
