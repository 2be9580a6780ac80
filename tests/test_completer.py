"""Tab completion of the interactive client, without a terminal."""

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from chatroom.client.terminal import ChatCompleter


class KnowsNames:
    def __init__(self, *names):
        self.known_names = set(names)


def complete(text, *names):
    completer = ChatCompleter(KnowsNames(*names))
    document = Document(text, len(text))
    return [(c.text, c.start_position) for c in completer.get_completions(document, CompleteEvent())]


def test_command_names_complete_with_a_space_only_where_arguments_follow():
    assert complete("sen") == [("sendto ", -3)]
    assert complete("se") == [("search ", -2), ("sendto ", -2), ("sessions ", -2)]
    assert complete("l") == [("list", -1), ("login ", -1), ("logout", -1)]
    assert complete("ex") == [("exit", -2)]


def test_nothing_completes_an_unknown_command():
    assert complete("zz") == []


def test_sendto_completes_known_names_in_order():
    assert complete("sendto ", "carol", "bob", "bea") == [("bea ", 0), ("bob ", 0), ("carol ", 0)]
    assert complete("sendto b", "carol", "bob", "bea") == [("bea ", -1), ("bob ", -1)]


def test_no_names_once_the_recipient_is_typed_or_for_other_commands():
    assert complete("sendto bob hel", "bob") == []
    assert complete("login b", "bob") == []


def test_earlier_lines_are_suggested_for_a_command_never_for_a_message():
    from prompt_toolkit.buffer import Buffer
    from prompt_toolkit.history import InMemoryHistory

    from chatroom.client.prompt import CommandSuggestions

    history = InMemoryHistory()
    for line in ("sendto bob an old message", "login alice"):
        history.append_string(line)
    buffer = Buffer(history=history)

    def suggested(text, talking=False):
        suggestion = CommandSuggestions(lambda: talking).get_suggestion(buffer, Document(text, len(text)))
        return suggestion.text if suggestion else None

    assert suggested("log") == "in alice"
    assert suggested("sendto bob ") is None and suggested("sendto bob an") is None
    assert suggested("an old", talking=True) is None
