"""What a chatroom session queues, as the IRC lines an IRC client reads.

Everything an IRC session sends goes through its outbox as frames, like any session's: the
IRC port's own answers as frames of the private type IRC_LINES (their body: IRC lines, ready),
and what other users send as the protocol's frames, which become PRIVMSG lines here. One place
for the translation, whichever path a frame took (a reply, a delivery, a message kept).
"""

import time
from typing import Protocol

from ...codec import Decoder, frame, frame_end
from ...device_frames import OwnMessage
from ...protocol import DirectMessage, Incoming, StoredMessage
from ...room_frames import EventKind, RoomEvent, RoomMessage
from .lines import MAX_LINE, encode_line, split_text
from .nicks import to_channel, to_nick

IRC_LINES = 0xFF  # never on the wire: a frame of IRC lines, inside the server only
SERVER_NAME = "chatroom"


def irc_frame(lines: bytes) -> bytes:
    return frame(IRC_LINES, lines)


def source_of_nick(nick: str) -> str:
    return f"{nick}!{nick}@{SERVER_NAME}"


def source_of(name: str) -> str:
    return source_of_nick(to_nick(name))


class Reader(Protocol):
    """Who the lines are for: the client's nickname, and the capabilities it asked for."""

    nick: str
    caps: set[str]


def to_irc(data: bytes, reader: Reader) -> bytes:
    """The IRC lines for data (whole frames) sent to an IRC client."""
    out = []
    offset = 0
    while offset < len(data):
        end = frame_end(data, offset)
        assert end is not None and end <= len(data), "a session queues whole frames"
        if data[offset] == IRC_LINES:
            out.append(bytes(data[offset + 5 : end]))
        else:
            out.extend(_message_lines(data[offset:end], reader))
        offset = end
    return b"".join(out)


def tags_for(reader: Reader, time_ms: int | None = None, message_id: int | None = None) -> dict | None:
    """The IRCv3 tags a line to reader carries: server-time, and a message's id (message-tags)."""
    tags = {}
    if "server-time" in reader.caps:
        moment = time.time() if time_ms is None else time_ms / 1000
        tags["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"
    if "message-tags" in reader.caps and message_id:
        tags["msgid"] = str(message_id)
    return tags or None


def privmsg_lines(source: str, target: str, text: str, tags: dict | None = None, command="PRIVMSG") -> list[bytes]:
    """A message from source (nick!user@host) as PRIVMSG (or NOTICE) lines, each within IRC's
    512 bytes (one per line of the text)."""
    room = MAX_LINE - len(f":{source} {command} {target} :\r\n".encode())
    return [encode_line(command, target, piece, source=source, tags=tags) for piece in split_text(text, room)]


def _message_lines(data: bytes, reader: Reader) -> list[bytes]:
    me = reader.nick
    lines: list[bytes] = []
    for message in Decoder.for_client().receive_data(data):
        kind = type(message)
        if kind is Incoming:
            lines += privmsg_lines(source_of(message.sender), me, message.text, tags_for(reader))
        elif kind is DirectMessage or kind is StoredMessage:
            tags = tags_for(reader, message.time_ms, message.id)
            lines += privmsg_lines(source_of(message.sender), me, message.text, tags)
        elif kind is RoomMessage and (to_nick(message.sender) != me or "echo-message" in reader.caps):
            tags = tags_for(reader, message.time_ms, message.id)
            lines += privmsg_lines(source_of(message.sender), to_channel(message.room), message.text, tags)
        elif kind is RoomEvent:
            lines += _event_lines(message, me)
        elif kind is OwnMessage:  # sent from another of the user's devices: as clients show their own
            tags = tags_for(reader, message.time_ms, message.id)
            lines += privmsg_lines(source_of_nick(me), _target(message.recipient), message.text, tags)
    return lines


def _target(recipient: str) -> str:
    return to_channel(recipient) if recipient.startswith("#") else to_nick(recipient)


def _event_lines(event: RoomEvent, me: str) -> list[bytes]:
    channel, source = to_channel(event.room), source_of(event.actor)
    own = to_nick(event.actor) == me  # (one's own JOIN and PART are the answers to them)
    if event.kind is EventKind.JOINED and not own:
        return [encode_line("JOIN", channel, source=source)]
    if event.kind is EventKind.PARTED and not own:
        return [encode_line("PART", channel, source=source)]
    if event.kind is EventKind.REMOVED:
        return [encode_line("KICK", channel, to_nick(event.detail), "", source=source)]
    if event.kind is EventKind.TOPIC:
        return [encode_line("TOPIC", channel, event.detail, source=source)]
    if event.kind is EventKind.INVITED and to_nick(event.detail) == me:
        return [encode_line("INVITE", me, channel, source=source)]
    if event.kind is EventKind.INVITE_ONLY:
        return [encode_line("MODE", channel, "+i" if event.detail == "on" else "-i", source=source)]
    if event.kind is EventKind.OWNER:
        return [encode_line("MODE", channel, "+o", to_nick(event.detail), source=source)]
    return []
