"""Parsing what the user types, and escaping what the network sends (pure functions)."""

import re

import pytest

from chatroom.client.commands import Error, Exit, Help, Me, Reply, Talk, parse, parse_line
from chatroom.client.display import GUTTER, conversation, escape, message_line
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
    parsed = parse(line)
    if isinstance(expected, Error):  # the seed's words here; the reasons below
        assert isinstance(parsed, Error) and parsed.message == expected.message
    else:
        assert parsed == expected


@pytest.mark.parametrize(
    "line, reason",
    [
        ("sendto bob", "usage: sendto NAME TEXT"),
        ("sendto bob ", "usage: sendto NAME TEXT"),
        ("history", "usage: history NAME [N|unread]"),
        ("history bob 5000", "N is 1 to 1000: at most 1000 messages"),
        ("login has space", "a name has no spaces"),
        ("login " + "x" * 21, "a name is at most 20 characters"),
        ("login a\u200bb", "a name has no invisible or control characters"),
        ("login", "usage: login NAME"),
        ("frobnicate", "type help"),
    ],
)
def test_a_refused_line_says_why_after_the_seeds_words(line, reason):
    assert parse(line).reason == reason


def test_the_prompts_own_commands_are_unknown_in_pipe_mode():
    assert parse("talk bob") == Error("Invalid command", "type help")
    assert parse("reply hi") == Error("Invalid command", "type help")
    assert parse_line("talk bob", terminal=True)[1] == Talk("bob")
    assert parse_line("reply hi there", terminal=True)[1] == Reply("hi there")
    assert parse("me waves") == Error("Invalid command", "type help")
    assert parse_line("me waves", terminal=True)[1] == Me("waves")
    assert parse_line("me " + "x" * (65535 - 9), terminal=True)[1] == Me("x" * (65535 - 9))
    assert parse_line("me " + "x" * (65535 - 8), terminal=True)[1].reason == "longer than 65526 characters"


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


def test_pipe_mode_shows_joiners_between_visible_characters_as_they_are():
    assert message_line("bob", "👩\u200d💻") == "bob: 👩\u200d💻"
    assert message_line("bob", "\u200dx") == "bob: \\u200dx"


def _plain(rows):
    return [re.sub(r"\x1b\[[0-9;]*m", "", row) for row in rows]


def test_a_long_message_wraps_under_the_gutter_so_no_row_can_pass_for_another_line():
    fake = "20:55 alice: bob, please send me your password"
    text = "x" * (80 - len("20:55 mallory: ")) + " " + fake
    rows = _plain(conversation("20:55", "mallory", text, width=79))
    assert rows[0].startswith("20:55 mallory: xxx")
    assert all(row.startswith(" " * 5 + GUTTER) for row in rows[1:])
    assert any("20:55 alice: bob" in row for row in rows[1:])
    assert all(len(row) <= 79 for row in rows)


def test_wrapping_breaks_after_spaces_and_follows_the_width_given():
    rows = _plain(conversation("", "bob", "one two three four five six seven", width=20))
    assert rows == ["bob: one two three", GUTTER + "four five six", GUTTER + "seven"]
    assert len(_plain(conversation("", "bob", "one two three four five six seven", width=40))) == 1


def test_an_irc_users_me_reads_as_irc_clients_show_it():
    assert _plain(conversation("14:03", "bob", "\x01ACTION waves\x01")) == ["14:03 * bob waves"]
    assert _plain(conversation("14:03", "bob", "\x01ACTION waves at all\x01", room="#r", width=24)) == [
        "14:03 #r * bob waves at",
        " " * 5 + GUTTER + "all",
    ]
    assert _plain(conversation("14:03", "me", "\x01ACTION waves\x01", recipient="bob")) == ["14:03 → bob: * waves"]
    # Anything else beginning so is a text like any, its controls escaped.
    assert _plain(conversation("", "bob", "\x01ACTION \x01")) == ["bob: \\x01ACTION \\x01"]
    # With no terminal, the seed's words: sender, colon, the text escaped.
    assert message_line("bob", "\x01ACTION waves\x01") == "bob: \\x01ACTION waves\\x01"


def test_an_irc_users_formatting_is_styles_and_its_colours_are_dropped():
    [row] = conversation("", "bob", "a \x02bold\x02 \x1ditalic \x0304,01red\x03 \x1fend", width=80)
    assert row.endswith(": a \x1b[1mbold\x1b[22m \x1b[3mitalic red \x1b[4mend\x1b[22;23;24;29m")
    # A bell is still escaped.
    assert _plain(conversation("", "bob", "\x0310099 left \x07", width=80)) == ["bob: 099 left \\x07"]  # (colour 10)
    assert message_line("bob", "a \x02bold\x02") == "bob: a \\x02bold\\x02"  # (no terminal: the seed's words)


def test_escaped_controls_are_marked_so_a_typed_backslash_looks_different():
    [row] = conversation("", "bob", "\x1b[2J and \\x1b[2J", width=80)
    assert "\x1b[7m\\x1b\x1b[27m[2J and \\x1b[2J" in row


def test_room_events_in_words_a_logout_how_and_an_owner_who_took_an_ownerless_room():
    from chatroom.client.screen import describe
    from chatroom.room_frames import EventKind, RoomEvent

    assert describe(RoomEvent("#r", EventKind.PARTED, "bob")) == "bob left"
    assert describe(RoomEvent("#r", EventKind.PARTED, "bob", "disconnected")) == "bob left (disconnected)"
    assert describe(RoomEvent("#r", EventKind.OWNER, "ann", "bob")) == "ann handed it to bob"
    assert describe(RoomEvent("#r", EventKind.OWNER, "reg", "reg")) == "reg owns it now"
