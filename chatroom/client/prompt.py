"""What the prompt offers while one types: the history file, Tab completion, suggestions from
earlier lines, and the keys that steer them."""

import os
from pathlib import Path

from prompt_toolkit.application import get_app
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.filters import Condition, completion_is_selected, has_completions
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings

from .commands import COMMANDS
from .display import escape

HISTORY_ENTRIES = 10_000


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


def command_part(typed: str, talking: bool) -> str | None:
    """The part of a typed line that is a command (a slash command in a conversation), or None
    when the line is a message (a conversation's plain line; ``sendto NAME`` and what follows)."""
    if talking:
        if not typed.startswith("/"):
            return None
        typed = typed[1:]
    command, space, rest = typed.partition(" ")
    words_before_text = COMMANDS[command].words_before_text if command in COMMANDS else None
    if space and words_before_text is not None and rest.count(" ") >= words_before_text:
        return None
    return typed


class ChatCompleter(Completer):
    """Command names first; then, for a command that takes a name, the usernames the client
    knows of. ``talking()``: whether a conversation is open (commands then start with /)."""

    def __init__(self, client, talking=lambda: False):
        self._client = client
        self._talking = talking

    def get_completions(self, document, complete_event):
        typed = command_part(document.text_before_cursor, self._talking())
        if typed is None:
            return
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


class CommandSuggestions(AutoSuggestFromHistory):
    """Earlier lines suggested while a command is typed, never while a message is: a whole old
    message offered after ``sendto NAME`` would be sent by a stray Right arrow."""

    def __init__(self, talking=lambda: False):
        self._talking = talking

    def get_suggestion(self, buffer, document):
        if command_part(document.text, self._talking()) is None:
            return None
        return super().get_suggestion(buffer, document)


def chat_keys() -> KeyBindings:
    """Esc closes the completion menu (Up and Down then go through the history again). Enter
    with more keys behind it from the same read is a newline: a terminal without bracketed
    paste delivers a pasted block that way, and it must be one message, not several commands
    (no one types that fast)."""
    keys = KeyBindings()

    @keys.add("enter", filter=Condition(lambda: bool(get_app().key_processor.input_queue)))
    def _pasted_newline(event):
        event.current_buffer.insert_text("\n")

    @keys.add("escape", filter=has_completions | completion_is_selected, eager=True)
    def _close_menu(event):
        event.current_buffer.cancel_completion()

    return keys
