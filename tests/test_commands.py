"""Parsing what the user types, and escaping what the network sends (pure functions)."""

import pytest

from chatroom.client.commands import Error, Exit, Help, parse
from chatroom.client.display import escape, message_line
from chatroom.protocol import ListUsers, Login, Logout, SendTo


@pytest.mark.parametrize(
    "line, expected",
    [
        ("login alice", Login("alice")),
        ("login alice\r\n", Login("alice")),
        ("login  alice ", Login("alice")),
        ("list", ListUsers()),
        ("list ", ListUsers()),
        ("logout", Logout()),
        ("exit", Exit()),
        ("help", Help()),
        ("sendto bob hi there", SendTo("bob", "hi there")),
        ("sendto bob  hi  ", SendTo("bob", " hi  ")),
        ("sendto bob \t", SendTo("bob", "\t")),
        ("", None),
        ("   ", None),
        ("\r\n", None),
        ("login", Error("Bad username")),
        ("login John Doe", Error("Bad username")),
        ("login " + "é" * 21, Error("Bad username")),
        ("login a\x1b", Error("Bad username")),
        ("sendto", Error("Bad username")),
        ("sendto JohnHello", Error("Bad username")),
        ("sendto bob ", Error("Bad username")),
        ("sendto bob    ", Error("Bad username")),
        ("sendto  bob hi", Error("Bad username")),
        ("sendto " + "x" * 21 + " hi", Error("Bad username")),
        ("sendto bob " + "x" * 65536, Error("Bad message")),
        ("list bob", Error("Invalid command")),
        ("logout Joe", Error("Invalid command")),
        ("exit client", Error("Invalid command")),
        ("EXIT", Error("Invalid command")),
        (" list", Error("Invalid command")),
        ("hello", Error("Invalid command")),
    ],
)
def test_parse(line, expected):
    assert parse(line) == expected


def test_longest_text_is_accepted():
    assert parse("sendto bob " + "x" * 65535) == SendTo("bob", "x" * 65535)


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("plain text, ünïcode ✓ 😀", "plain text, ünïcode ✓ 😀"),
        ("two\nlines", "two\\nlines"),
        ("cr\rlf", "cr\\rlf"),
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("\x1b[2J", "\\x1b[2J"),
        ("back\x08space", "back\\x08space"),
        ("del\x7f c1\x9b", "del\\x7f c1\\x9b"),
        ("\u202eoverride\u2066isolate\u200f", "\\u202eoverride\\u2066isolate\\u200f"),
        ("line\u2028separator", "line\\u2028separator"),
    ],
)
def test_escape(raw, shown):
    assert escape(raw) == shown


def test_message_line_escapes_the_sender_too():
    assert message_line("b\u202eob", "hi\n") == "b\\u202eob: hi\\n"
