"""The interactive front end: a conversation above a prompt that stays put.

The prompt is prompt_toolkit's, called from the main greenlet only; every command runs in a
worker greenlet, so that the prompt stays drawn and editable while a reply is awaited, and
Ctrl-C cancels the wait and keeps the line being typed. A command that needs a password asks
the main greenlet for it (:class:`_Passwords`): the prompt steps aside for the password
prompt, then comes back with its draft. Incoming messages and outcomes are printed through
``patch_stdout``, which draws them above the prompt and leaves the half-typed line and the
cursor where they were. Greenlets touch the running application only through
``call_soon_threadsafe``, the one entry point that wakes the prompt's event loop.
"""

import gevent
from gevent.event import AsyncResult
from gevent.queue import Queue
from prompt_toolkit import PromptSession
from prompt_toolkit.history import DummyHistory
from prompt_toolkit.patch_stdout import patch_stdout

from ..protocol import SendTo
from .commands import MAX_TEXT_CHARS, Command, Error, Exit, Me, Reconnect, Reply, Talk, parse_line
from .connection import ConnectionLost
from .core import NoPassword
from .display import as_action, dim, escape
from .prompt import ChatCompleter, CommandSuggestions, PrivateHistory, chat_keys, history_path
from .screen import TerminalOutput

ASK_ABOVE_LINES = 5


class _PasswordWanted(Exception):
    """Ends the prompt for a moment: a command is waiting for a password."""


class _Commands:
    """Runs typed lines one after another in a worker greenlet; the one under way can be
    cancelled."""

    def __init__(self, client, link, output):
        self._client = client
        self._link = link
        self._output = output
        self._lines: Queue = Queue()
        self._current: gevent.Greenlet | None = None
        self._worker = gevent.spawn(self._work)

    def submit(self, command: Command | None, action, ask_password) -> None:
        self._lines.put((command, action, ask_password))

    def cancel(self) -> bool:
        """Cancel the command under way, if any (its reply is dropped when it comes)."""
        current = self._current
        if current is None or current.ready():
            return False
        current.kill(block=False)
        return True

    def stop(self) -> None:
        """Stop at once: what was sent is sent; no reply is waited for."""
        self.cancel()
        self._worker.kill(block=False)

    def _work(self):
        while True:
            self._current = gevent.spawn(self._run, *self._lines.get())
            self._current.join()
            if isinstance(self._current.value, gevent.GreenletExit):
                self._output.notice("cancelled")
            self._current = None

    def _run(self, command: Command | None, action, ask_password):
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


class _Passwords:
    """Passwords asked for by the worker greenlet, at the prompt of the main one."""

    def __init__(self, wake):
        self._wake = wake  # ends the command prompt, so that the main greenlet asks
        self._wanted: Queue = Queue()

    @property
    def wanted(self) -> bool:
        return not self._wanted.empty()

    def ask(self, prompt: str, new: bool) -> str:
        """In the worker: the password, once the user typed it (NoPassword if they did not)."""
        answer: AsyncResult = AsyncResult()
        self._wanted.put((prompt, new, answer))
        self._wake()
        try:
            return answer.get()
        finally:
            if not answer.ready():  # the command was cancelled meanwhile: nobody waits for it
                answer.set_exception(NoPassword(cancelled=True))

    def serve(self, ask_now) -> None:
        """In the main greenlet: ask for each password wanted, with ask_now(prompt, new)."""
        while not self._wanted.empty():
            prompt, new, answer = self._wanted.get()
            if answer.ready():
                continue
            try:
                answer.set(ask_now(prompt, new))
            except NoPassword as no:
                answer.set_exception(no)


def _password_prompt(asking: PromptSession, output: TerminalOutput, plaintext_warning, given_password):
    """ask_now for _Passwords: the password given (--password-file, $CHATROOM_PASSWORD), else
    asked without echo, never into the history file, a new one twice; a warning first when
    the connection is not encrypted. Ctrl-C or Ctrl-D cancels."""

    def ask(prompt: str, new: bool) -> str:
        if given_password is not None:
            return given_password
        try:
            if plaintext_warning is not None:
                output.notice(f"warning: {plaintext_warning}")
                if asking.prompt("send a password anyway? [y/N] ").strip().lower() not in ("y", "yes"):
                    raise NoPassword("not sent over a connection that is not encrypted")
            password = asking.prompt(prompt, is_password=True)
            if new and asking.prompt("the same again: ", is_password=True) != password:
                raise NoPassword("the two passwords differ")
        except (KeyboardInterrupt, EOFError):
            raise NoPassword(cancelled=True) from None
        return password

    return ask


class _Conversation:
    """Where plain lines go when a conversation is open (``talk NAME``)."""

    def __init__(self):
        self.peer: str | None = None

    def read(self, line: str) -> "tuple[Command | None, object] | None":
        """What a typed line asks for: a message to the peer, or (after /) a command."""
        if self.peer is not None:
            if not line.startswith("/"):
                if not line.strip():
                    return None
                if len(line) > MAX_TEXT_CHARS:
                    return None, Error("Bad message", f"longer than {MAX_TEXT_CHARS} characters")
                return None, SendTo(self.peer, line)
            line = line[1:]
        return parse_line(line, terminal=True)


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
    talk = _Conversation()
    session: PromptSession[str] = PromptSession(
        history=PrivateHistory(history_path()),
        auto_suggest=CommandSuggestions(lambda: talk.peer is not None),
        completer=ChatCompleter(client, lambda: talk.peer is not None),
        complete_while_typing=False,
        bottom_toolbar=lambda: _toolbar(client, link, address, talk.peer),
        key_bindings=chat_keys(),
        erase_when_done=True,  # what was typed is shown by its outcome (a message once, as sent)
    )
    passwords = _Passwords(wake=lambda: in_prompt_loop(step_aside))

    def in_prompt_loop(action):
        loop = session.app.loop
        if loop is not None and session.app.is_running:
            loop.call_soon_threadsafe(action)

    def step_aside():
        future = session.app.future
        if session.app.is_running and future is not None and not future.done():
            if link is None and client.connection.lost.is_set():
                session.app.exit(exception=ConnectionLost())
            elif passwords.wanted:
                session.app.exit(exception=_PasswordWanted())

    if link is not None:
        link.on_change = lambda: in_prompt_loop(session.app.invalidate)
    else:
        client.connection.lost.rawlink(lambda _event: in_prompt_loop(step_aside))

    def prompt_text():
        who = f"{escape(client.name)}" if client.name else ""
        return f"{who} → {escape(talk.peer)}> " if talk.peer else f"{who}> "

    commands = _Commands(client, link, output)
    asking: PromptSession[str] = PromptSession(history=DummyHistory())
    ask_now = _password_prompt(asking, output, plaintext_warning, given_password)
    draft = ""
    with patch_stdout(raw=True):
        output.notice(f"connected to {address} — type help")
        while True:
            passwords.serve(ask_now)
            try:
                line = session.prompt(prompt_text, default=draft, pre_run=step_aside)
                draft = ""
            except _PasswordWanted:
                draft = session.default_buffer.text
                continue
            except KeyboardInterrupt:
                # Ctrl-C cancels the command under way, keeping the line being typed; with
                # none under way, it clears the line.
                draft = session.default_buffer.text if commands.cancel() else ""
                continue
            except EOFError:
                line = "exit"  # Ctrl-D
            parsed = talk.read(line)
            if parsed is None:
                if link is not None and not link.connected:
                    link.retry_now()  # Enter on an empty line: try to reconnect at once
                continue
            command, action = parsed
            if not isinstance(action, SendTo | Reply | Me):
                print(dim(f"{prompt_text()}{line}"), flush=True)  # the command, as typed
            if isinstance(action, Exit):
                commands.stop()
                return 0
            if isinstance(action, Talk):
                talk.peer = action.peer
                continue
            if isinstance(action, Reply):
                if client.last_sender is None:
                    output.outcome("Failure", "nobody has written to you yet")
                    continue
                action = SendTo(client.last_sender, action.text)
            if isinstance(action, Me):
                if talk.peer is None:
                    output.outcome("Failure", "me speaks in a talk: talk NAME first")
                    continue
                action = SendTo(talk.peer, as_action(action.text))
            if isinstance(action, Reconnect):
                if link is not None and not link.connected:
                    link.retry_now()
                else:
                    output.notice("connected" if link is not None else "not reconnecting (--no-reconnect)")
                continue
            if isinstance(action, SendTo) and not _confirmed(action, asking, output):
                continue
            commands.submit(command, action, passwords.ask)
            gevent.sleep(0)  # let the command start before the prompt is drawn again


def _confirmed(action: SendTo, asking: PromptSession, output: TerminalOutput) -> bool:
    """A message of many lines (a paste gone wrong?) is sent only once confirmed."""
    if action.text.count("\n") < ASK_ABOVE_LINES:
        return True
    lines = action.text.count("\n") + 1
    try:
        answer = asking.prompt(f"send {lines} lines to {escape(action.recipient)}? [y/N] ")
    except (KeyboardInterrupt, EOFError):
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        output.notice("not sent")
        return False
    return True


def _toolbar(client, link, address, peer) -> str:
    state = link.status() if link is not None else "connected"
    who = escape(client.name) if client.name else "not logged in"
    parts = [state, address, who]
    if peer is not None:
        parts.append(f"talking with {escape(peer)}")
    if client.listed_count is not None:
        parts.append(f"{client.listed_count} online")
    return " " + " │ ".join(parts)
