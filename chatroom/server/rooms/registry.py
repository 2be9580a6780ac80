"""The rooms of one server: who is in each, who owns it, its topic and invitations, and the id
of its next message. No I/O: the rules tell the members what changed; the store (when there
is one) keeps what outlives a connection: rooms with an owner or registered members, their
registered members and invitations, and their history.

A room's messages get ids from one counter per room, taken on the hub (one thread), so that
every member is handed them in the order of their ids.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from ...codec import room_message_frame
from ...protocol import Reason
from ...room_frames import RoomFlag
from ..connection.fanout import offer_each
from ..presence.skeleton import skeleton
from ..storage.quotas import Quotas
from ..storage.store import Store, now_ms

if TYPE_CHECKING:
    from ..presence.directory import Directory, RoomSink

DEFAULT_QUOTAS = Quotas()


@dataclass(eq=False)
class Room:
    name: str
    owner: str | None = None
    topic: str = ""
    invite_only: bool = False
    invited: set[str] = field(default_factory=set)
    members: dict[str, bool] = field(default_factory=dict)  # name -> registered (kept by the store)
    last_id: int = 0
    # The room sinks of its members logged in, and the directory's count of changes they were
    # found at (see Rooms.tell); None once its members change.
    sinks: tuple[int, list["RoomSink"]] | None = field(default=None, repr=False)

    def flags_for(self, name: str | None) -> RoomFlag:
        flags = RoomFlag(0)
        if name in self.members:
            flags |= RoomFlag.MEMBER
        if name is not None and name == self.owner:
            flags |= RoomFlag.OWNER
        if self.invite_only:
            flags |= RoomFlag.INVITE_ONLY
        return flags

    @property
    def kept(self) -> bool:
        """Whether the room outlives its connections: it has an owner or a registered member."""
        return self.owner is not None or any(self.members.values())


class Joined(NamedTuple):
    """How a JOIN went: the room, with ``new`` when the user was not in it before; or no room,
    and why (a reason and its detail)."""

    room: Room | None
    new: bool = False
    reason: Reason | None = None
    detail: str = ""


def look_alike_key(name: str) -> str:
    """What tells rooms apart: two whose names have the same key cannot both be made. The
    confusable skeleton of the name (after its "#"), as for usernames, and its case ignored
    besides: ``#Team`` beside ``#team`` is a look-alike to people, and one channel to an IRC
    client (CASEMAPPING=ascii). (The skeleton again after the case is folded: a lower-case
    letter may have a prototype of its own, ``m`` that of ``rn``.)"""
    return skeleton(skeleton(name[1:]).casefold())


def refusal(room: Room | None, user: str, rooms_of_user: int, count_rooms, quotas: Quotas) -> Joined | None:
    """Why user may not join room (None: to be made), under the quotas; None if they may.
    ``count_rooms()``: how many rooms there are (asked only for a room to be made)."""
    if rooms_of_user >= quotas.rooms_per_user:
        return Joined(None, reason=Reason.TOO_MANY_ROOMS, detail=str(quotas.rooms_per_user))
    if room is None:
        if count_rooms() >= quotas.rooms_per_server:
            return Joined(None, reason=Reason.TOO_MANY_ROOMS, detail=str(quotas.rooms_per_server))
    elif room.invite_only and user not in room.invited and user != room.owner:
        return Joined(None, reason=Reason.INVITE_ONLY)
    elif len(room.members) >= quotas.members_per_room:
        return Joined(None, reason=Reason.ROOM_FULL, detail=str(quotas.members_per_room))
    return None


def may_invite(room: Room, user: str, quotas: Quotas) -> bool:
    """Whether room may hold an invitation for user: as many as the members it may have
    (unbounded, an owner inviting made-up names in a loop would fill the server's memory)."""
    return user in room.invited or len(room.invited) < quotas.members_per_room


class Rooms:
    def __init__(self, store: Store | None = None, quotas: Quotas = DEFAULT_QUOTAS):
        self._store = store
        self._quotas = quotas
        self._rooms: dict[str, Room] = {}
        self._look_alikes: dict[str, str] = {}  # look_alike_key -> the room's name
        self._of: dict[str, set[str]] = {}  # user -> the rooms they are in
        self._guests_invited: dict[str, set[str]] = {}  # unregistered name -> the rooms it is invited to

    def start(self) -> None:
        """Load the rooms the store kept."""
        if self._store is None:
            return
        for kept in self._store.load_rooms():
            room = Room(kept.name, kept.owner, kept.topic, kept.invite_only, set(kept.invited), last_id=kept.last_id)
            room.members = dict.fromkeys(kept.members, True)
            self._add(room)
            for member in room.members:
                self._of.setdefault(member, set()).add(room.name)

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def rooms_of(self, user: str) -> set[str]:
        return self._of.get(user, set())

    def company(self, user: str) -> set[str]:
        """Everyone in a room with user."""
        return {member for name in self.rooms_of(user) if (room := self.get(name)) for member in room.members}

    def visible_to(self, user: str | None) -> list[Room]:
        """The rooms anyone may join, and the user's own (invite-only rooms they are in or
        invited to), by name."""
        own = self._of.get(user, set()) if user else set()
        return sorted(
            (room for room in self._rooms.values() if not room.invite_only or room.name in own or user in room.invited),
            key=lambda room: room.name,
        )

    # --- Membership ---------------------------------------------------------------------

    def join(self, name: str, user: str, registered: bool) -> Joined:
        """Make user a member (creating the room, which a registered creator owns). Joining a
        room one is in is no change."""
        room = self._rooms.get(name)
        if room is not None and user in room.members:
            return Joined(room)
        refused = refusal(room, user, len(self._of.get(user, ())), lambda: len(self._rooms), self._quotas)
        if refused is not None:
            return refused
        if room is None:
            look_alike = self._look_alikes.get(look_alike_key(name))
            if look_alike is not None:
                return Joined(None, reason=Reason.LOOKS_LIKE, detail=look_alike)
            room = Room(name, owner=user if registered else None)
            self._add(room)
            if self._store is not None and room.kept:
                self._store.save_room(room.name, room.owner, room.topic, room.invite_only)
        room.members[user] = registered
        room.sinks = None
        self._of.setdefault(user, set()).add(name)
        if registered and self._store is not None:
            self._store.add_member(name, user)
        return Joined(room, new=True)

    def leave(self, room: Room, user: str) -> None:
        """User is no longer a member (parted, removed, or logged out unregistered). A room
        without members is gone, its owner with it; an owner who leaves hands the room to the
        registered member who has been there longest."""
        registered = room.members.pop(user, False)
        room.sinks = None
        mine = self._of.get(user)
        if mine is not None:
            mine.discard(room.name)
            if not mine:
                del self._of[user]
        store = self._store
        if registered and store is not None:
            store.remove_member(room.name, user)
        if not room.members:
            self._remove(room)
            return
        if room.owner == user:
            room.owner = next((name for name, kept in room.members.items() if kept), None)
            self.save(room)

    def claim(self, room: Room, user: str) -> bool:
        """A room without an owner is its first registered member's: user's, now (False where
        it has one)."""
        if room.owner is not None:
            return False
        room.owner = user
        self.save(room)
        return True

    def registered(self, user: str) -> list[Room]:
        """User's name was registered while it was on: a registered member of its rooms (kept,
        as their registered members are, across logouts and restarts), and the owner of those
        that had none (the rooms it owns now)."""
        claimed = []
        for name in self._guests_invited.pop(user, ()):  # (its invitations are kept now too)
            if self._store is not None and name in self._rooms and user in self._rooms[name].invited:
                self._store.add_invite(name, user)
        for name in self._of.get(user, ()):
            room = self._rooms[name]
            was_kept = room.kept
            room.members[user] = True
            if self.claim(room, user):  # (saved, with its owner)
                claimed.append(room)
            elif not was_kept:
                self.save(room)  # (kept now, for its registered member)
            if self._store is not None:
                self._store.add_member(name, user)
        return claimed

    def leave_all_unregistered(self, user: str) -> list[Room]:
        """At logout of an unregistered user: the rooms they left."""
        rooms = [self._rooms[name] for name in sorted(self._of.get(user, ()))]
        for room in rooms:
            self.leave(room, user)
        return rooms

    def logged_in(self, user: str, registered: bool) -> None:
        """(A cluster's rooms note who is on which node; one process knows, and forgets an
        unregistered member at its logout.)"""

    def logged_out(self, user: str) -> None:
        for name in self._of.get(user, ()):
            self._rooms[name].sinks = None  # (not to hold on to the connection's outbox)

    def save(self, room: Room) -> None:
        """Keep the room's owner, topic and rule (or forget it, if nothing keeps it)."""
        if self._store is not None:
            if room.kept:
                self._store.save_room(room.name, room.owner, room.topic, room.invite_only)
            else:
                self._store.delete_room(room.name)

    @property
    def quotas(self) -> Quotas:
        return self._quotas

    def invite(self, room: Room, user: str, registered: bool) -> bool:
        """Invite user (False, and nothing changed, where the room holds all it may)."""
        if not may_invite(room, user, self._quotas):
            return False
        room.invited.add(user)
        if not registered:
            self._guests_invited.setdefault(user, set()).add(room.name)
        elif self._store is not None:
            self._store.add_invite(room.name, user)
        return True

    def uninvite(self, room: Room, user: str) -> None:
        if user in room.invited:
            room.invited.discard(user)
            if self._store is not None:
                self._store.remove_invite(room.name, user)
        guest = self._guests_invited.get(user)
        if guest is not None:
            guest.discard(room.name)
            if not guest:
                del self._guests_invited[user]

    def forget_invitations(self, user: str) -> None:
        """At the logout of an unregistered user: its name's invitations end with it (the
        next to take the name is someone else)."""
        for name in self._guests_invited.pop(user, ()):
            room = self._rooms.get(name)
            if room is not None:
                room.invited.discard(user)

    def next_id(self, room: Room) -> int:
        room.last_id += 1
        return room.last_id

    # --- Delivery -------------------------------------------------------------------------

    def tell(self, room: Room, frame: bytes, directory: "Directory") -> int:
        """Hand frame to every member logged in here; how many took it. A member whose queue
        is full is dropped as stalled, never waited for.

        The members' room sinks are found once and kept until the room's members change or
        the directory's names do: a room's message costs each member no look-up, and a
        session's outbox no call (offer_each)."""
        sinks, changes = room.sinks, directory.changes
        if sinks is None or sinks[0] != changes:
            here = directory.here
            sinks = room.sinks = (changes, [m.room_sink() for name in room.members if (m := here(name)) is not None])
        return offer_each(sinks[1], frame)

    def post(self, name: str, sender: str, text: bytes, directory: "Directory") -> tuple[int, int, int] | None:
        """A message from a member to the room (its text in UTF-8): its id and time, handed to
        every member (the sender too), in the order of the ids; (id, time, how many took it).
        None, and nothing posted, when the sender is not a member of a room of that name."""
        room = self._rooms.get(name)
        if room is None or sender not in room.members:
            return None
        message_id, time_ms = self.next_id(room), now_ms()
        return (
            message_id,
            time_ms,
            self.tell(room, room_message_frame(room.name, sender, message_id, time_ms, text), directory),
        )

    def online(self, room: Room, find) -> set[str]:
        """The members logged in."""
        return {member for member in room.members if find(member) is not None}

    def counts(self) -> tuple[int, int]:
        """(rooms, memberships), for the metrics."""
        return len(self._rooms), sum(len(room.members) for room in self._rooms.values())

    # --- The index ----------------------------------------------------------------------

    def _add(self, room: Room) -> None:
        self._rooms[room.name] = room
        self._look_alikes.setdefault(look_alike_key(room.name), room.name)  # (two made before: the first)

    def _remove(self, room: Room) -> None:
        self._rooms.pop(room.name, None)
        key = look_alike_key(room.name)
        if self._look_alikes.get(key) == room.name:
            del self._look_alikes[key]
        if self._store is not None:
            self._store.delete_room(room.name)


def member_names(rooms: Iterable[Room]) -> set[str]:
    return {name for room in rooms for name in room.members}
