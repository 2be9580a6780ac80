"""The IRCv3 tags a line to an IRC client carries: its registered sender's account
(account-tag), a message's id (message-tags) and its time (server-time), as the client asked
for them, written as lines.tags_written writes tags."""

import functools
import itertools
import re
import time
from typing import TYPE_CHECKING

from .lines import tags_written

if TYPE_CHECKING:
    from .translate import Reader

# The tags a reader may take, each as the compiled loop's flag (_speedups.c's TAG_*), and the
# flags of each set of them.
TAG_FLAG = {"account-tag": 1, "message-tags": 2, "server-time": 4}
TAGGING = frozenset(TAG_FLAG)
TAG_FLAGS = {
    frozenset(tags): sum(TAG_FLAG[tag] for tag in tags)
    for count in (1, 2, 3)
    for tags in itertools.combinations(TAG_FLAG, count)
}
# Each set of tags as one object, the same for every reader taking it: the lines tagged for
# them are kept under it, and a dict finds its own key by identity, where an equal set made for
# each reader was compared element by element, per member of a room for every message.
TAKEN = {tags: tags for tags in TAG_FLAGS}


def tagged(
    line: bytes,
    reader: "Reader",
    message_id: int | None,
    time_ms: int | None,
    sender: bytes,
    target: str | None = None,
) -> bytes:
    """line (a message's, untagged) with the tags the reader takes (as with_tags writes them,
    without a dict to sort: a line per message for every client that takes tags)."""
    tags = message_tags(reader, time_ms, message_id, sender.decode(), target)
    return tags_written(tags) + b" " + line if tags else line


def tags_for(
    reader: "Reader",
    time_ms: int | None = None,
    message_id: int | None = None,
    sender: str | None = None,
    target: str | None = None,
) -> dict | None:
    """The IRCv3 tags a line to reader carries (see message_tags)."""
    return dict(message_tags(reader, time_ms, message_id, sender, target)) or None


def message_tags(
    reader: "Reader", time_ms: int | None, message_id: int | None, sender: str | None, target: str | None = None
) -> list[tuple[str, str]]:
    """The IRCv3 tags a line to reader carries, in the order lines carry them (sorted): its
    registered sender's account (account-tag), a message's id (message-tags: as room_msgid
    writes it where the line's ``target`` is a channel), server-time."""
    caps = reader.caps
    tags = []
    if sender is not None and "account-tag" in caps and reader.is_account(sender):
        tags.append(("account", sender))
    if message_id and "message-tags" in caps:
        msgid = str(message_id)
        if target is not None and target.startswith("#"):  # (a channel's: a room's message)
            msgid = room_msgid(message_id, time_ms or 0, target)
        tags.append(("msgid", msgid))
    if "server-time" in caps:
        tags.append(("time", irc_time(int(time.time() * 1000) if time_ms is None else time_ms)))
    return tags


def room_msgid(message_id: int, time_ms: int, channel: str) -> str:
    """A room message's msgid, ``ID-TIME-CHANNEL`` (``7-1765121698545-#team``). IRCv3's
    message-ids has no other message on the network share it, ever: a room's ids count up in
    that room alone, and start again in a room made again once its last member has left, so its
    time and channel go with them. (A direct message's id is the server's own, unique already.)"""
    return f"{message_id}-{time_ms}-{channel}"


def id_of_msgid(msgid: str) -> int | None:
    """The chatroom id a msgid of this port's stands for (a room's within its room); None if
    it is none of them."""
    number, dash, rest = msgid.partition("-")
    if not (number.isascii() and number.isdigit()) or (dash and not _ROOM_MSGID_REST.fullmatch(rest)):
        return None
    return int(number)


_ROOM_MSGID_REST = re.compile(r"[0-9]+-#\S+")


def irc_time(time_ms: int) -> str:
    """A moment as IRCv3's server-time writes it."""
    return f"{_second(time_ms // 1000)}.{time_ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4)  # (the messages of a second share it)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
