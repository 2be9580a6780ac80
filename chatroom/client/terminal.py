"""The interactive front end: a prompt that stays put while messages arrive above it.

The prompt is prompt_toolkit's, called from the main greenlet only. Incoming messages are
printed by the connection's greenlet through ``patch_stdout``, which draws them above the
prompt and leaves the half-typed line and the cursor where they were. The connection's
greenlet touches the running application only through ``call_soon_threadsafe``, the one
entry point that wakes the prompt's event loop.
"""

import os
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.history import FileHistory
from prompt_toolkit.patch_stdout import patch_stdout

from .commands import COMMANDS
from .connection import ConnectionLost
from .display import escape

_TAKES_ARGUMENTS = {"login", "sendto"}


def history_path() -> Path:
    """$XDG_STATE_HOME/chatroom/history, else ~/.local/state/chatroom/history."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "chatroom" / "history"


class ChatCompleter(Completer):
    """Command names first; after ``sendto `` the usernames the client knows of."""

    def __init__(self, client):
        self._client = client

    def get_completions(self, document, complete_event):
        typed = document.text_before_cursor
        command, space, rest = typed.partition(" ")
        if not space:
            for name in COMMANDS:
                if name.startswith(command):
                    suffix = " " if name in _TAKES_ARGUMENTS else ""
                    yield Completion(name + suffix, -len(command), display=name)
        elif command == "sendto" and " " not in rest:
            for name in sorted(self._client.known_names):
                if name.startswith(rest):
                    yield Completion(name + " ", -len(rest), display=escape(name))


def run_terminal(client) -> int:
    path = history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(path)),
        auto_suggest=AutoSuggestFromHistory(),
        completer=ChatCompleter(client),
        complete_while_typing=False,
    )
    lost = client.connection.lost

    def exit_if_lost():
        if lost.is_set() and session.app.is_running:
            session.app.exit(exception=ConnectionLost())

    def on_lost(_event):
        loop = session.app.loop
        if loop is not None:
            loop.call_soon_threadsafe(exit_if_lost)

    def prompt_text():
        return f"{escape(client.name)}> " if client.name else "> "

    lost.rawlink(on_lost)
    with patch_stdout():
        while not lost.is_set():
            try:
                line = session.prompt(prompt_text, pre_run=exit_if_lost)
            except KeyboardInterrupt:
                continue  # Ctrl-C abandons the line being typed
            except EOFError:
                return 0  # Ctrl-D
            if not client.handle(line):
                return 0
    raise ConnectionLost()
