"""A room's events as the lines an IRC client reads: JOIN, PART, QUIT, KICK, TOPIC, INVITE,
MODE.

When a thousand join a room, each join is a thousand members' lines: those of the members an
event is not about are made once (see bystanders_event_line).

A guest's logout takes it out of each of its rooms, an event a room; IRC says that once, as a
QUIT: a reader shown one is not shown the same quitter's next ones (the rooms' events of one
logout come one after another), until it is shown a JOIN.
"""

from typing import TYPE_CHECKING, NamedTuple

from ...codec import Decoder
from ...room_frames import EventKind, RoomEvent
from .lines import encode_line
from .marker_times import markread_line
from .nicks import source_of, to_channel, to_nick

if TYPE_CHECKING:
    from .translate import Reader

_EVENT_CAPS = frozenset({"extended-join", "invite-notify"})  # (those a bystander's lines depend on)


def join_line(name: str, channel: str, reader: "Reader") -> bytes:
    """name joining channel; with IRCv3 extended-join, its account (``*``: a guest) and its
    "real name", which chatroom does not keep: the name again."""
    if "extended-join" in reader.caps:
        return encode_line("JOIN", channel, name if reader.is_account(name) else "*", name, source=source_of(name))
    return encode_line("JOIN", channel, source=source_of(name))


class _Bystander:
    """A member a room's event is not about (see bystanders_event_line): no nick is empty; the
    capabilities its lines depend on, and who is registered known as the reader's."""

    nick = ""
    channels: frozenset[str] = frozenset()
    own_join = None  # (a bystander's lines are never about its own JOIN)

    def __init__(self, caps: frozenset[str], is_account) -> None:
        self.caps = caps
        self.is_account = is_account


class _Known(NamedTuple):
    """A room event's lines for the members it is not about."""

    about: tuple[str, ...]  # the nicks it is about
    lines: bytes
    kind: EventKind
    actor: str
    quit: bool  # a guest's logout: its QUIT
    registered: bool  # an extended JOIN's joiner was when the lines were made


# (A room's event frame, the reader's capabilities among _EVENT_CAPS) -> _Known
_bystanders_lines: dict[tuple[bytes, frozenset[str]], _Known] = {}


def bystanders_event_line(data: bytes, start: int, end: int, reader: "Reader") -> bytes | None:
    """The lines of the room event at start for a member it is not about (neither its actor
    nor the one it names: their lines, and what they know of their channels, event_lines
    works out), the same for all the others; None for a reader it is about."""
    key = (data if start == 0 and end == len(data) else data[start:end], _EVENT_CAPS & reader.caps)
    known = _bystanders_lines.get(key)
    # (A JOIN of the same frame, the same name joining the same room, after it was registered
    # meanwhile names its account now.)
    if known is None or (
        known.kind is EventKind.JOINED
        and "extended-join" in key[1]
        and reader.is_account(known.actor) != known.registered
    ):
        if len(_bystanders_lines) > 256:
            _bystanders_lines.clear()
        [event] = Decoder.for_client().receive_data(key[0])
        if type(event) is not RoomEvent:
            return None
        about: tuple[str, ...] = (to_nick(event.actor),)
        if event.kind is EventKind.REMOVED or event.kind is EventKind.INVITED:
            about += (to_nick(event.detail),)
        lines = b"".join(event_lines(event, _Bystander(key[1], reader.is_account)))  # type: ignore[arg-type]
        quit = event.kind is EventKind.PARTED and bool(event.detail)
        registered = event.kind is EventKind.JOINED and reader.is_account(event.actor)
        known = _bystanders_lines[key] = _Known(about, lines, event.kind, event.actor, quit, registered)
    if reader.nick in known.about:
        return None
    if known.kind is EventKind.JOINED:
        reader.last_quit = None
    elif known.quit:
        if reader.last_quit == known.actor:
            return b""
        reader.last_quit = known.actor
    return known.lines


def event_lines(event: RoomEvent, reader: "Reader") -> list[bytes]:
    """The lines of a room's event for reader (and what it knows of its channels, updated)."""
    me, room = reader.nick, event.room
    channel, source = to_channel(room), source_of(event.actor)
    own = to_nick(event.actor) == me
    if event.kind is EventKind.JOINED:
        reader.last_quit = None  # (a QUIT after a JOIN is news)
        if own:
            if room in reader.channels:
                reader.own_join = room  # (a new owner's event about it may follow: see OWNER)
                return []  # (this client's JOIN, answered as it asked, or joined already)
            reader.own_join = None
            reader.channels.add(room)  # (joined from another of the user's devices: a new member)
            reader.joined_elsewhere(room)
            if "draft/read-marker" in reader.caps:
                return [join_line(event.actor, channel, reader), markread_line(channel, None)]
        return [join_line(event.actor, channel, reader)]
    if event.kind is EventKind.PARTED:
        if own:
            if room not in reader.channels:
                return []
            reader.channels.discard(room)
        elif event.detail:  # (a guest out at its logout: shown once, see bystanders_event_line)
            return [encode_line("QUIT", event.detail, source=source)]
        return [encode_line("PART", channel, source=source)]
    if event.kind is EventKind.REMOVED:
        if to_nick(event.detail) == me:
            reader.channels.discard(room)
        # (a removal carries no reason: the one who removed stands for it, as servers do)
        return [encode_line("KICK", channel, to_nick(event.detail), to_nick(event.actor), source=source)]
    if event.kind is EventKind.TOPIC:
        return [encode_line("TOPIC", channel, event.detail, source=source)]
    if event.kind is EventKind.INVITED:
        invited = to_nick(event.detail)
        # (IRCv3 invite-notify: the other members are told too; the one who invited has had 341.)
        if invited == me or ("invite-notify" in reader.caps and not own):
            return [encode_line("INVITE", invited, channel, source=source)]
        return []
    if event.kind is EventKind.INVITE_ONLY:
        return [encode_line("MODE", channel, "+i" if event.detail == "on" else "-i", source=source)]
    if event.kind is EventKind.OWNER:
        if own and event.detail == event.actor and reader.own_join == room:
            # (Its own JOIN took the room, which had no owner: the JOIN's names say so, and this
            # event, sent while the JOIN is answered, would come before its JOIN.)
            return []
        if event.detail == event.actor:  # (it took a room that had no owner)
            return [encode_line("MODE", channel, "+o", to_nick(event.detail), source=source)]
        # Handed on: a room has one owner, so the one who had it is op no more (where it left,
        # and the room went to the member there longest, the -o is of one no longer there).
        return [encode_line("MODE", channel, "-o+o", to_nick(event.actor), to_nick(event.detail), source=source)]
    return []
