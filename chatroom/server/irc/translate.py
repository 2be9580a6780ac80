"""What a chatroom session queues, as the IRC lines an IRC client reads.

Everything an IRC session sends goes through its outbox as frames, like any session's: the
IRC port's own answers as frames of the private type IRC_LINES (their body: IRC lines, ready),
and what other users send as the protocol's frames, which become PRIVMSG lines here. One place
for the translation, whichever path a frame took (a reply, a delivery, a message kept).
"""

from typing import Protocol

from ...codec import Decoder, frame, frame_end
from ...device_frames import Marked, OwnMessage, PresenceState, PresenceStatus
from ...fields import ID_AND_TIME_SIZE, split_id_and_time
from ...protocol import DIRECT_MESSAGE, INCOMING, DirectMessage, Incoming, StoredMessage
from ...room_frames import ROOM_EVENT, ROOM_MESSAGE, RoomEvent, RoomMessage
from ..message_ids import time_of_id
from .lines import MAX_LINE, encode_line, split_text
from .marker_times import MarkerTimes, markread_line
from .nicks import SERVER_NAME, source_of, source_of_nick, to_channel, to_nick
from .room_events import bystanders_event_line, event_lines
from .speedups import compiled
from .tags import TAG_FLAG, tagged, tags_for
from .welcome import IRC_WELCOMED, Unwelcomed
from .writing import Writing, writing_for

IRC_LINES = 0xFF  # never on the wire: a frame of IRC lines, inside the server only


def irc_frame(lines: bytes) -> bytes:
    return frame(IRC_LINES, lines)


class Reader(Protocol):
    """Who the lines are for: the client's nickname, the capabilities it asked for, and what
    its lines depend on."""

    nick: str
    caps: set[str]
    writing: Writing | None  # writing_for(nick, caps), as they are now; None until the welcome
    unwelcomed: Unwelcomed | None  # what comes before the welcome, held for it (None after)
    away_known: set[str]  # (away-notify) the nicks it was told are away
    echo_labels: dict[str, list[str]]  # (labeled-response) room -> the labels of its messages to echo, in order
    channels: set[str]  # the rooms it was shown as joined
    marker_times: MarkerTimes
    away_shown: bool  # told it is away (306), and not told back since (305)
    last_quit: str | None  # the name of the last QUIT it was shown (see room_events)
    own_join: str | None  # the room of the last JOIN of its own that it answered (see room_events)

    def is_account(self, name: str) -> bool:
        """Whether name is a registered user's (account-tag)."""

    def joined_elsewhere(self, room: str) -> None:
        """Another of the user's devices joined room: the topic and names are to follow the
        JOIN line made for it (they are read where reading may wait, not here)."""


def to_irc(chunks: list[bytes], reader: Reader) -> bytes:
    """The IRC lines for the frames sent to an IRC client, as they were queued: chunks of whole
    frames (a room's message, mostly, the very bytes object every member was handed)."""
    writing = reader.writing
    if writing is None:
        return _before_welcome(chunks, reader)
    out: list[bytes] = []
    to_reader, own_source, taken, tag_flags, marking, echoing = writing
    is_account = reader.is_account if tag_flags & _ACCOUNT_TAG else None
    index, count = 0, len(chunks)
    while index < count:
        if compiled is not None and not marking:
            # (Chunks that are room messages, or direct messages and the port's own lines, in
            # the common case: compiled, up to the first chunk that is another.)
            lines, index = compiled.chunk_lines(
                chunks,
                index,
                _room_lines,
                own_source,
                taken,
                _tagged_room_lines,
                to_reader,
                _sources,
                _channels,
                MAX_LINE,
                tag_flags,
                is_account,
                echoing,
            )
            if index == count and not out:
                return lines  # (all of them at one call: most sends)
            if lines:
                out.append(lines)
            if index == count:
                break
        data = chunks[index]
        index += 1
        if data and data[0] == ROOM_MESSAGE and not marking and (line := _room_lines.get(data)) is not None:
            # (A room's message as every member was handed it, its line made for the first of
            # them, and tagged for the first who takes these tags: all of the chunk at once.)
            if not line.startswith(own_source):
                if taken is not None:
                    line = _tagged_room_lines.get(taken, {}).get(data)
                if line is not None:
                    out.append(line)
                    continue
        offset = 0
        while offset < len(data):
            if compiled is not None:
                # (What most frames are, direct messages and the port's own lines, as their
                # lines here: compiled, up to the first frame of another kind.)
                lines, offset = compiled.direct_lines(
                    data, offset, to_reader, _sources, MAX_LINE, tag_flags, is_account
                )
                if lines:
                    out.append(lines)
                if offset == len(data):
                    break
            end = frame_end(data, offset)
            assert end is not None and end <= len(data), "a session queues whole frames"
            kind = data[offset]
            if kind == IRC_LINES:
                out.append(data[offset + 5 : end])
            elif (kind == DIRECT_MESSAGE or kind == INCOMING) and (
                line := _direct_line(data, offset, end, to_reader, None if taken is None else reader)
            ):
                out.append(line)
            elif (
                kind == ROOM_MESSAGE
                and (line := _room_line(data, offset, end, reader, own_source, taken, marking)) is not None
            ):
                out.append(line)
            elif kind == ROOM_EVENT and (line := bystanders_event_line(data, offset, end, reader)) is not None:
                out.append(line)
            else:
                out.extend(_message_lines(data[offset:end], reader))
            offset = end
    return b"".join(out)


def _before_welcome(chunks: list[bytes], reader: Reader) -> bytes:
    """to_irc, before the welcome: the port's own lines go, other frames are held for it (see
    welcome.py), and from the welcome on all is translated as to_irc does."""
    held = reader.unwelcomed
    assert held is not None, "writing comes with the welcome"
    out = []
    for index, data in enumerate(chunks):
        offset = 0
        while offset < len(data):
            end = frame_end(data, offset)
            assert end is not None and end <= len(data), "a session queues whole frames"
            if data[offset] == IRC_LINES:
                out.append(data[offset + 5 : end])
            elif data[offset] == IRC_WELCOMED:
                reader.unwelcomed, reader.writing = None, writing_for(reader.nick, reader.caps)
                after = [data[offset + 5 : end], *held.still_news(), data[end:], *chunks[index + 1 :]]
                out.append(to_irc([chunk for chunk in after if chunk], reader))
                return b"".join(out)
            else:
                held.frames.append(data[offset:end])
            offset = end
    return b"".join(out)


_sources: dict[bytes, bytes] = {}  # a sender's name (UTF-8) -> the start of its lines: b":nick!nick@chatroom"
_channels: dict[bytes, bytes] = {}  # a room's name (UTF-8) -> its channel's


def _direct_line(data: bytes, start: int, end: int, to_reader: bytes, tagged_for: Reader | None) -> bytes | None:
    """A message to the reader (DIRECT-MESSAGE, INCOMING) as its PRIVMSG line, made from the
    frame's bytes, for what most are: one line of text that fits in one IRC line. None for the
    others, which _message_lines translates. ``to_reader``: b" PRIVMSG nick :"; ``tagged_for``:
    the reader, if it takes tags."""
    name_end = start + 6 + data[start + 5]
    text_at = name_end + ID_AND_TIME_SIZE if data[start] == DIRECT_MESSAGE else name_end
    text = data[text_at:end]
    if b"\n" in text or b"\r" in text or b"\0" in text:
        return None
    sender = data[start + 6 : name_end]
    line = b"".join((_sources.get(sender) or _source(sender), to_reader, text, b"\r\n"))
    if len(line) > MAX_LINE:
        return None
    if tagged_for is None:
        return line
    message_id = time_ms = None
    if text_at != name_end:
        message_id, time_ms, _ = split_id_and_time(data, name_end)
    return tagged(line, tagged_for, message_id, time_ms, sender)


_ACCOUNT_TAG = TAG_FLAG["account-tag"]
_room_lines: dict[bytes, bytes] = {}  # a room's frame -> its line (without tags), for its next members
_tagged_room_lines: dict[frozenset[str], dict[bytes, bytes]] = {}  # tags taken -> frame -> its line so tagged


def _room_line(
    data: bytes, start: int, end: int, reader: Reader, own_source: bytes, taken: frozenset[str] | None, marking: bool
) -> bytes | None:
    """A room's message as its PRIVMSG line, the same for every member taking the same tags
    (made once for them all, from the frame's bytes), when it is one line that fits; nothing
    for the reader's own when it takes nothing of it (no echo, no marker). None for the
    others, which _message_lines translates. ``own_source``: b":nick!" of the reader;
    ``taken``: the tags it takes; ``marking``: whether it takes read markers."""
    # (Most often the chunk is the one frame, the bytes object all members were handed, its
    # hash worked out by the first of them: no copy, no hashing again.)
    frame = data if start == 0 and end == len(data) else data[start:end]
    line = _room_lines.get(frame)
    if line is None:
        line = _new_room_line(data, start, end)
        if line is None:
            return None
        _room_lines[frame] = line
    plain = taken is None and not marking
    if line.startswith(own_source):  # (a line begins with its sender)
        return b"" if plain and "echo-message" not in reader.caps else None
    if plain:
        return line  # (the same line for every member: nothing of this reader's in it)
    room_end = start + 6 + data[start + 5]
    sender_end = room_end + 1 + data[room_end]
    message_id, time_ms, _ = split_id_and_time(data, sender_end)
    if marking:
        reader.marker_times.note(data[start + 6 : room_end].decode(), message_id, time_ms)
    if taken is None:
        return line
    so_tagged = _tagged_room_lines.setdefault(taken, {})
    with_tags = so_tagged.get(frame)
    if with_tags is None:
        sender, channel = data[room_end + 1 : sender_end], _channel(data[start + 6 : room_end]).decode()
        with_tags = so_tagged[frame] = tagged(line, reader, message_id, time_ms, sender, channel)
    return with_tags


if compiled is not None:
    compiled.known_lines(_room_lines, _tagged_room_lines, _sources, _channels, MAX_LINE)  # (for lines_for)


def _new_room_line(data: bytes, start: int, end: int) -> bytes | None:
    """The PRIVMSG line of the room message at start (without tags); None if its text is not
    one line that fits. (The lines of the last 256 messages are kept: a room's members take
    theirs within a round of the loop.)"""
    if len(_room_lines) > 256:
        _room_lines.clear()
        _tagged_room_lines.clear()
    room_end = start + 6 + data[start + 5]
    sender_end = room_end + 1 + data[room_end]
    text = data[split_id_and_time(data, sender_end)[2] : end]
    if b"\n" in text or b"\r" in text or b"\0" in text:
        return None
    channel = _channel(data[start + 6 : room_end])
    line = b"".join((_source(data[room_end + 1 : sender_end]), b" PRIVMSG ", channel, b" :", text, b"\r\n"))
    return line if len(line) <= MAX_LINE else None


def _source(sender: bytes) -> bytes:
    """b":nick!nick@chatroom" for a sender's name (UTF-8)."""
    source = _sources.get(sender)
    if source is None:
        if len(_sources) > 10_000:
            _sources.clear()
        source = _sources[sender] = f":{source_of(sender.decode())}".encode()
    return source


def _channel(room: bytes) -> bytes:
    """A room's channel name (UTF-8) for its name (UTF-8)."""
    channel = _channels.get(room)
    if channel is None:
        if len(_channels) > 10_000:
            _channels.clear()
        channel = _channels[room] = to_channel(room.decode()).encode()
    return channel


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
            lines += privmsg_lines(source_of(message.sender), me, message.text, tags_for(reader, sender=message.sender))
        elif kind is DirectMessage or kind is StoredMessage:
            tags = tags_for(reader, message.time_ms, message.id, message.sender)
            lines += privmsg_lines(source_of(message.sender), me, message.text, tags)
        elif kind is RoomMessage:
            lines += _room_message_lines(message, reader)
        elif kind is RoomEvent:
            lines += event_lines(message, reader)
        elif kind is OwnMessage:  # sent from another of the user's devices: as clients show their own
            target = _target(message.recipient)
            tags = tags_for(reader, message.time_ms, message.id, target=target)
            lines += privmsg_lines(source_of_nick(me), target, message.text, tags)
        elif kind is PresenceStatus and "away-notify" in reader.caps:
            lines += _away_lines(message, reader)
        elif kind is Marked and "draft/read-marker" in reader.caps:
            lines += _markread_lines(message, reader)
    return lines


def _room_message_lines(message: RoomMessage, reader: Reader) -> list[bytes]:
    if "draft/read-marker" in reader.caps:
        reader.marker_times.note(message.room, message.id, message.time_ms)
    own = to_nick(message.sender) == reader.nick
    if own and "echo-message" not in reader.caps:
        return []
    channel = to_channel(message.room)
    tags = tags_for(reader, message.time_ms, message.id, message.sender, channel)
    waiting = reader.echo_labels.get(message.room) if own else None
    label = waiting.pop(0) if waiting else None
    if label is not None:  # (the answer to a labeled PRIVMSG: labeled-response)
        tags = {**(tags or {}), "label": label}
    return privmsg_lines(source_of(message.sender), channel, message.text, tags)


OFFLINE_AWAY = "Offline"  # the away message of a registered user with no session, a member still


def _away_lines(status: PresenceStatus, reader: Reader) -> list[bytes]:
    """IRCv3 away-notify: AWAY with its message when someone goes away, bare when they come
    back (or a guest leaves while away); a registered user who logs out stays a member of
    its rooms, and is away (OFFLINE_AWAY) until it comes back, as Ergo shows an always-on
    client with no session; about oneself (away said, or ended, on another of one's
    devices), 306 or 305, as an AWAY of one's own is answered, where the client does not know."""
    lines = []
    for name, state, message in status.changes:
        nick = to_nick(name)
        if nick == reader.nick:
            away = state is PresenceState.AWAY
            if away != reader.away_shown:
                reader.away_shown = away
                lines.append(own_away_line(nick, away))
            continue
        if state is PresenceState.OFFLINE and reader.is_account(name):
            message, state = OFFLINE_AWAY, PresenceState.AWAY
        if state is PresenceState.AWAY:
            lines.append(away_line(nick, message or "Away", reader.away_known))
        elif nick in reader.away_known:
            reader.away_known.discard(nick)
            lines.append(encode_line("AWAY", source=source_of_nick(nick)))
    return lines


def away_line(nick: str, message: str, away_known: set[str]) -> bytes:
    """(away-notify) nick is away, saying message: the AWAY line, nick noted as told so."""
    away_known.add(nick)
    return encode_line("AWAY", message, source=source_of_nick(nick))


def own_away_line(nick: str, away: bool) -> bytes:
    """306 (away now) or 305 (back), as an AWAY is answered, and as a client is told its away
    ended some other way."""
    if away:
        return encode_line("306", nick, "You have been marked as being away", source=SERVER_NAME)
    return encode_line("305", nick, "You are no longer marked as being away", source=SERVER_NAME)


def _markread_lines(marked: Marked, reader: Reader) -> list[bytes]:
    """IRCv3 read-marker: another device moved a marker (when its time is known here)."""
    conversation = marked.conversation
    if conversation.startswith("#"):
        time_ms = reader.marker_times.time_of(conversation, marked.id)
    else:
        time_ms = time_of_id(marked.id)
    return [] if time_ms is None else [markread_line(_target(conversation), time_ms)]


def _target(recipient: str) -> str:
    return to_channel(recipient) if recipient.startswith("#") else to_nick(recipient)
