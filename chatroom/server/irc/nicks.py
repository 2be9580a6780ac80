"""Chatroom names as IRC nicknames and channels, and back: every chatroom user and room can be
reached over IRC, and nothing is ever mis-routed.

A name that is already a valid IRC nickname (a letter or one of ``[]\\`_^{|}`` first, then
those, digits and ``-``) and does not begin with a backquote is its own nickname. Any other
name (non-ASCII, a leading digit, ``,``, ``*``, ``!``, ``@``, ``.``...) is written as a
backquote followed by its UTF-8 bytes in lower-case base32 without padding: ``日本`` is
`` `42l2lzu4vq``. Since a plain nickname never begins with a backquote and an encoded one always
does, the mapping is one to one, and decoding gives back the very name. Rooms the same way:
``#team`` is the channel ``#team``; a room whose name after ``#`` is no valid nickname is
``#`` followed by the encoded form.

IRC clients compare nicknames without regard to case; chatroom names are exact. The port
resolves a nickname a client writes to the exact chatroom name first (see the session), so a
message never reaches ``Bob`` when ``bob`` was meant.
"""

import base64
import functools
import re

_PLAIN = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*\Z")
ESCAPE = "`"
SERVER_NAME = "chatroom"  # the server's name in lines, and every user's host
# IRC's CASEMAPPING=ascii, as str.translate takes it: how clients compare nicknames.
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def to_nick(name: str) -> str:
    if _PLAIN.match(name) and not name.startswith(ESCAPE):
        return name
    return ESCAPE + base64.b32encode(name.encode()).decode().rstrip("=").lower()


@functools.lru_cache(maxsize=4096)  # (asked for every message sent: the same few nicks, mostly)
def to_name(nick: str) -> str | None:
    """The chatroom name a nickname stands for; None if it stands for none (not a nickname,
    or an encoded one that does not decode to UTF-8)."""
    if not _PLAIN.match(nick):
        return None
    if not nick.startswith(ESCAPE):
        return nick
    encoded = nick[1:].upper()
    if not encoded or not re.fullmatch(r"[A-Z2-7]+", encoded):
        return None
    try:
        name = base64.b32decode(encoded + "=" * (-len(encoded) % 8)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return name if to_nick(name) == nick else None  # (one spelling only: no aliases)


def to_channel(room: str) -> str:
    return "#" + to_nick(room[1:])


def to_room(channel: str) -> str | None:
    if not channel.startswith("#"):
        return None
    name = to_name(channel[1:])
    return None if name is None else "#" + name


def to_room_among(channel: str, joined: "set[str]") -> str | None:
    """The room channel names, where a client is in the rooms ``joined``: one of them under
    another case (an IRC client takes channels so, CASEMAPPING=ascii, and rooms cannot differ
    only in case), else as to_room has it."""
    room = to_room(channel)
    if room is None or room in joined:
        return room
    folded = room.casefold()
    return next((other for other in joined if other.casefold() == folded), room)


def source_of_nick(nick: str) -> str:
    """Where a line from nick comes from: nick!nick@chatroom."""
    return f"{nick}!{nick}@{SERVER_NAME}"


def source_of(name: str) -> str:
    return source_of_nick(to_nick(name))
