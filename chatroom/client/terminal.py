"""The interactive front end: a conversation above a prompt that stays put.

The prompt is prompt_toolkit's, called from the main greenlet only; commands run in a worker
greenlet, so that the prompt stays drawn and editable while a reply is awaited (and Ctrl-C can
cancel the wait). Incoming messages and outcomes are printed through ``patch_stdout``, which
draws them above the prompt and leaves the half-typed line and the cursor where they were.
Greenlets touch the running application only through ``call_soon_threadsafe``, the one entry
point that wakes the prompt's event loop.
"""

import datetime
import os
import time
from pathlib import Path

import gevent
from gevent.event import Event
from gevent.queue import Queue
from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.history import DummyHistory, FileHistory
from prompt_toolkit.patch_stdout import patch_stdout

from ..protocol import SendTo
from .commands import COMMANDS, USAGE, Command, Exit, parse_line
from .connection import REPLY_TIMEOUT, ConnectionLost
from .display import conversation, dim, escape

HISTORY_ENTRIES = 10_000
ASK_ABOVE_LINES = 5


def history_path() -> Path:
    """$XDG_STATE_HOME/chatroom/history, else ~/.local/state/chatroom/history."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "chatroom" / "history"


class PrivateHistory(FileHistory):
    """prompt_toolkit's history file, readable by its owner only (0600 in a 0700 folder) and
    cut to its last HISTORY_ENTRIES entries when opened."""

    def __init__(self, path: Path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(path, 0o600)
        _keep_last_entries(path, HISTORY_ENTRIES)
        super().__init__(str(path))


def _keep_last_entries(path: Path, count: int) -> None:
    # Entries are written as "\n# time\n+line\n...": each starts with a blank line.
    text = path.read_text(encoding="utf-8", errors="replace")
    entries = text.split("\n\n")
    if len(entries) > count + 1:
        path.write_text("\n\n".join([""] + entries[-count:]), encoding="utf-8")


class ChatCompleter(Completer):
    """Command names first; then, for a command that takes a name, the usernames the client
    knows of."""

    def __init__(self, client):
        self._client = client

    def get_completions(self, document, complete_event):
        typed = document.text_before_cursor
        command, space, rest = typed.partition(" ")
        if not space:
            for name in sorted(COMMANDS):
                if name.startswith(command):
                    suffix = " " if COMMANDS[name].arguments else ""
                    yield Completion(name + suffix, -len(command), display=name)
        elif command in COMMANDS and COMMANDS[command].completes_names and " " not in rest:
            for name in sorted(self._client.known_names):
                if name.startswith(rest):
                    yield Completion(name + " ", -len(rest), display=escape(name))


class TerminalOutput:
    """A conversation: times, a colour per sender, a bell, one's own messages echoed, and the
    seed's words with a reason after them."""

    def __init__(self, timestamps: bool = True, bell: bool = True):
        self._timestamps = timestamps
        self._bell = bell

    def _clock(self) -> str:
        return time.strftime("%H:%M") if self._timestamps else ""

    def _print(self, lines):
        print("\n".join(lines), flush=True)

    def message(self, sender, text):
        lines = conversation(self._clock(), sender, text)
        if self._bell:
            lines[-1] += "\a"
        self._print(lines)

    def outcome(self, word, reason=None):
        print(f"{word} ({reason})" if reason else word, flush=True)

    def names(self, names):
        if not names:
            print(dim("(nobody is logged in)"), flush=True)
        for name in names:
            print(escape(name), flush=True)

    def sent(self, recipient, text):
        self._print(conversation(self._clock(), "", text, recipient=recipient))

    def usage(self):
        print(USAGE, flush=True)

    def stored(self, message):
        self._print(conversation(_when(message.time_ms), message.sender, message.text))

    def history(self, peer, entries):
        if not entries:
            self.notice(f"(no messages with {escape(peer)})")
        for entry in entries:
            clock = _when(entry.time_ms)
            if entry.sent:
                self._print(conversation(clock, "", entry.text, recipient=peer))
            else:
                self._print(conversation(clock, peer, entry.text))

    def notice(self, text):
        print(dim(text), flush=True)

    def warning(self, text):
        self.notice(text)


class _Commands:
    """Runs typed lines one after another in a worker greenlet; the one under way can be
    cancelled."""

    def __init__(self, client, link, output):
        self._client = client
        self._link = link
        self._output = output
        self._lines: Queue = Queue()
        self._current: gevent.Greenlet | None = None
        self._idle = Event()
        self._worker = gevent.spawn(self._work)

    def submit(self, command: Command | None, action) -> None:
        self._idle.clear()
        self._lines.put((command, action))

    def run_now(self, command: Command | None, action, ask_password) -> None:
        """Run a command in the calling greenlet (which may then ask for passwords), after the
        ones submitted before it."""
        self._idle.wait(REPLY_TIMEOUT)
        self._run(command, action, ask_password)

    def cancel(self) -> bool:
        """Cancel the command under way, if any (its reply is dropped when it comes)."""
        current = self._current
        if current is None or current.ready():
            return False
        current.kill(block=False)
        return True

    def finish(self, timeout: float) -> None:
        """Let the commands typed so far run (up to timeout), then stop."""
        self._lines.put(None)
        self._worker.join(timeout)
        self._worker.kill(block=False)

    def _work(self):
        while True:
            if self._lines.empty():
                self._idle.set()
            parsed = self._lines.get()
            if parsed is None:
                return
            self._current = gevent.spawn(self._run, *parsed)
            self._current.join()
            if isinstance(self._current.value, BaseException):
                self._output.notice("cancelled")
            self._current = None

    def _run(self, command: Command | None, action, ask_password=None):
        try:
            needs_server = command is not None and command.needs_server
            if self._link is not None and not self._link.connected and needs_server:
                self._output.notice(f"not connected ({self._link.status()})")
                return None
            self._client.run(action, ask_password)
        except ConnectionLost:
            if self._link is not None:
                self._output.notice(f"not connected ({self._link.status()})")
        except gevent.GreenletExit as cancelled:
            return cancelled
        return None


def _password_asker(asking: PromptSession, output: TerminalOutput, plaintext_warning, given_password):
    """ask_password for the Client: the password given (--password-file, $CHATROOM_PASSWORD),
    else asked without echo, never into the history file, a new one twice; a warning first
    when the connection is not encrypted."""

    def ask(prompt: str, new: bool) -> str | None:
        if given_password is not None:
            return given_password
        try:
            if plaintext_warning is not None:
                output.notice(f"warning: {plaintext_warning}")
                if asking.prompt("send a password anyway? [y/N] ").strip().lower() not in ("y", "yes"):
                    return None
            password = asking.prompt(prompt, is_password=True)
            if new and asking.prompt("the same again: ", is_password=True) != password:
                output.notice("the two passwords differ")
                return None
        except (KeyboardInterrupt, EOFError):
            return None
        return password

    return ask


def run_terminal(
    client,
    output: TerminalOutput,
    address: str,
    link=None,
    plaintext_warning: str | None = None,
    given_password: str | None = None,
) -> int:
    """Chat at the prompt until exit or Ctrl-D; without a link, the first lost connection
    ends the client (ConnectionLost). ``plaintext_warning``: said before a password is sent
    over a connection that is not encrypted."""
    session: PromptSession[str] = PromptSession(
        history=PrivateHistory(history_path()),
        auto_suggest=AutoSuggestFromHistory(),
        completer=ChatCompleter(client),
        complete_while_typing=False,
        bottom_toolbar=lambda: _toolbar(client, link, address),
    )

    def in_prompt_loop(action):
        loop = session.app.loop
        if loop is not None and session.app.is_running:
            loop.call_soon_threadsafe(action)

    def exit_if_lost():
        if link is None and client.connection.lost.is_set() and session.app.is_running:
            session.app.exit(exception=ConnectionLost())

    if link is not None:
        link.on_change = lambda: in_prompt_loop(session.app.invalidate)
    else:
        client.connection.lost.rawlink(lambda _event: in_prompt_loop(exit_if_lost))

    def prompt_text():
        return f"{escape(client.name)}> " if client.name else "> "

    commands = _Commands(client, link, output)
    asking: PromptSession[str] = PromptSession(history=DummyHistory())
    ask_password = _password_asker(asking, output, plaintext_warning, given_password)
    with patch_stdout(raw=True):
        output.notice(f"connected to {address} — type help")
        while True:
            try:
                line = session.prompt(prompt_text, pre_run=exit_if_lost)
            except KeyboardInterrupt:
                commands.cancel()  # else Ctrl-C just abandons the line being typed
                continue
            except EOFError:
                line = "exit"  # Ctrl-D
            parsed = parse_line(line)
            if parsed is None:
                continue
            command, action = parsed
            if isinstance(action, Exit):
                commands.finish(timeout=10.0)
                return 0
            if isinstance(action, SendTo) and action.text.count("\n") >= ASK_ABOVE_LINES:
                lines = action.text.count("\n") + 1
                answer = asking.prompt(f"send {lines} lines to {escape(action.recipient)}? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    output.notice("not sent")
                    continue
            if command is not None and command.asks_password:
                commands.run_now(command, action, ask_password)  # may ask for a password, at this prompt
                continue
            commands.submit(command, action)
            gevent.sleep(0)  # let the command start before the prompt is drawn again


def _when(time_ms: int) -> str:
    """HH:MM for today, else the date too."""
    moment = datetime.datetime.fromtimestamp(time_ms / 1000)
    return moment.strftime("%H:%M" if moment.date() == datetime.date.today() else "%Y-%m-%d %H:%M")


def _toolbar(client, link, address) -> str:
    state = link.status() if link is not None else "connected"
    who = escape(client.name) if client.name else "not logged in"
    parts = [state, address, who]
    if client.listed_count is not None:
        parts.append(f"{client.listed_count} online")
    return " " + " │ ".join(parts)
