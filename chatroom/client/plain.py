"""The client's front end for a stdin that is not a terminal: plain lines in, the seed's
words out, byte for byte, for scripts and tests."""

import os
import sys

import gevent
from gevent.fileobject import FileObject

from ..device_frames import SessionFlag
from .commands import USAGE
from .connection import ConnectionLost
from .core import Client, NoPassword
from .display import escape, local_time, message_line


class PlainOutput:
    """The seed's words, one per line, nothing more: for scripts and tests."""

    def __init__(self, write):
        self._write = write

    def message(self, sender, text):
        self._write(message_line(sender, text))

    def outcome(self, word, reason=None):
        self._write(word)

    def names(self, names):
        for name in names:
            self._write(escape(name))

    def sent(self, recipient, text, word, reason):
        self._write(word)

    def away(self):
        pass

    def usage(self):
        self._write(USAGE)

    def stored(self, message):
        self._write(message_line(message.sender, message.text))

    def warning(self, text):
        print(f"chatroom-client: {text}", file=sys.stderr, flush=True)

    notice = warning

    def room_message(self, message, mine):
        if not mine:  # (one's own was answered Success)
            self._write(f"{escape(message.room)} {message_line(message.sender, message.text)}")

    def room_event(self, event):
        pass

    def rooms(self, entries):
        for entry in entries:
            self._write(escape(entry.name))

    def members(self, room, members):
        for name, _flags in members:
            self._write(escape(name))

    def topic(self, room, topic):
        self._write(escape(topic))

    def room_history(self, room, entries):
        for entry in entries:
            when = _when(entry.time_ms)
            self._write(f"{when} {escape(room)} {message_line(entry.sender, entry.text)}")

    def search_results(self, found, me):
        for entry in found:
            self._write(f"{_when(entry.time_ms)} {escape(entry.conversation)} {message_line(entry.sender, entry.text)}")

    def own_message(self, message):
        pass  # (one's own: the seed's words are for what others send)

    def unread(self, entries):
        pass

    def sessions(self, entries):
        for entry in entries:
            this = " this" if entry.flags & SessionFlag.THIS else ""
            self._write(
                f"{entry.number} {escape(entry.transport)} {escape(entry.address)} {_when(entry.since_ms)}{this}"
            )

    def history(self, peer, entries):
        for entry in entries:
            when = _when(entry.time_ms)
            sender = "me" if entry.sent else peer
            self._write(f"{when} {message_line(sender, entry.text)}")


def _when(time_ms: int) -> str:
    moment = local_time(time_ms)
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "????-??-?? ??:??"


def run_plain(client: Client, password: str | None = None, plaintext_warning: str | None = None) -> int:
    """Read commands from a non-terminal stdin until exit or end of input. ``password`` (from
    --password-file or $CHATROOM_PASSWORD) is what a registered name needs."""
    stdin = FileObject(sys.stdin.fileno(), "rb", close=False)
    connection = client.connection
    assert connection is not None

    def ask_password(prompt: str, new: bool) -> str:
        if password is None:
            client.output.warning("a password is needed: give it with --password-file FILE or $CHATROOM_PASSWORD")
            raise NoPassword("no password given")
        if plaintext_warning is not None:
            client.output.warning(f"warning: {plaintext_warning}")
        return password

    def read_commands() -> bool:
        """True on exit or end of input; False if the connection was lost first."""
        try:
            for raw in stdin:
                if not client.handle(raw.decode("utf-8", "replace"), ask_password):
                    break
        except ConnectionLost:
            return False
        except BrokenPipeError:
            silence_stdout()  # whoever read our output has stopped reading: nothing more to say
        return True

    worker = gevent.spawn(read_commands)
    gevent.wait([worker, connection.lost], count=1)
    if worker.ready() and worker.value:
        return 0
    worker.kill()
    raise ConnectionLost()


def silence_stdout() -> None:
    """Send what is still to be printed to /dev/null: the reader of stdout is gone (``| head
    -1``), and Python would otherwise report the broken pipe when it flushes at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
