"""The room requests (extension version 3), for :class:`~..rules.Rules`: joining and parting,
the lists, the owner's powers, and messages to a room, each encoded once and handed to every
member here in the order of its id.

A mixin: it holds no state of its own; Rules holds the connection's, and :class:`~.registry.
Rooms` the server's.
"""

import logging
from typing import TYPE_CHECKING, Any

from ...codec import encode
from ...fields import as_many_as_fit
from ...protocol import MAX_BODY, MAX_FRAME, MAX_HISTORY_COUNT, MAX_SERVER_BODY, Reason, is_one_line, is_valid_username
from ...room_frames import (
    MAX_TOPIC_BYTES,
    MEMBER_FLAGS,
    EventKind,
    GiveRoom,
    Invite,
    Join,
    Kick,
    ListMembers,
    ListRooms,
    MemberFlag,
    MemberList,
    Part,
    RoomEntry,
    RoomEvent,
    RoomFlag,
    RoomHistory,
    RoomHistoryEntry,
    RoomList,
    SetInviteOnly,
    SetTopic,
    is_room_name,
    room_entry,
)
from ...search_frames import MAX_SEARCH_COUNT, Found, Search, SearchResults, found_entry
from ..operations.counts import COUNTS
from ..presence.directory import DirectoryUnavailable
from ..presence.directory import RemoteRecipient as _Remote
from ..replies import OK
from ..storage.store import StoreUnavailable
from .registry import Room, Rooms
from .shared import SharedRooms

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 200


class RoomRules:
    if not TYPE_CHECKING:
        __slots__ = ()  # (at run time only: mypy checks assignments against Rules' slots)
    else:  # what Rules holds and does
        from ..presence.directory import Directory
        from ..storage.accounts import Accounts

        name: str | None
        _registered: bool
        _rooms: Rooms | SharedRooms | None
        _directory: Directory
        _accounts: Accounts | None

        def _failure(self, reason: Reason, detail: str = "") -> bytes:
            raise NotImplementedError

        def history_key(self) -> str:
            raise NotImplementedError

        def hold_pushes(self) -> None: ...

    # --- Messages ---------------------------------------------------------------------------

    def _room_message(self, name: str, text: str, encoded: bytes) -> bytes:
        """SENDTO a room (its text checked already, and in UTF-8 as ``encoded``): to every
        member here (the sender too), in the order of the ids."""
        sender = self.name
        if sender is None:
            return self._failure(Reason.NOT_LOGGED_IN)
        assert self._rooms is not None
        # (Read now: in a cluster the post waits for Redis, while the session may be ended.)
        history_key = self.history_key() if self._accounts is not None else ""
        posted = self._rooms.post(name, sender, encoded, self._directory)
        if posted is None:
            # Why not, asked only now (a cluster's room is read from Redis); a member by now
            # was not one when the message was posted.
            return self._member_room(name)[1] or self._failure(Reason.NOT_A_MEMBER)
        message_id, time_ms, delivered = posted
        COUNTS.room_messages += 1
        COUNTS.room_deliveries += delivered
        if self._accounts is not None:
            try:
                self._accounts.record_room(name, message_id, sender, text, time_ms, history_key)
            except StoreUnavailable:
                pass  # relayed, not kept: the log has said so once
        return OK

    def _tell(self, room: Room, frame: bytes) -> int:
        """Hand frame to every member (see the registry's tell); how many here took it."""
        assert self._rooms is not None
        return self._rooms.tell(room, frame, self._directory)

    def _event(self, room: Room, kind: EventKind, detail: str = "") -> None:
        assert self.name is not None
        self._tell(room, encode(RoomEvent(room.name, kind, self.name, detail)))

    # --- Membership ---------------------------------------------------------------------------

    def _join(self, event: Join) -> bytes:
        if self.name is None:
            return self._failure(Reason.NOT_LOGGED_IN)
        if not is_room_name(event.room):
            return self._failure(Reason.INVALID_ROOM)
        rooms = self._rooms
        assert rooms is not None
        joined = rooms.join(event.room, self.name, self._registered)
        if joined.room is None:
            assert joined.reason is not None
            return self._failure(joined.reason, joined.detail)
        if joined.new:
            rooms.uninvite(joined.room, self.name)
            self._event(joined.room, EventKind.JOINED)
            if self._registered and rooms.claim(joined.room, self.name):  # (it had no owner)
                self._event(joined.room, EventKind.OWNER, self.name)
        return OK

    def _part(self, event: Part) -> bytes:
        room, refused = self._member_room(event.room)
        if room is None:
            return refused
        assert self._rooms is not None
        assert self.name is not None
        owned = room.owner == self.name
        self._event(room, EventKind.PARTED)
        self._rooms.leave(room, self.name)
        if owned and room.owner is not None:  # (handed to the registered member there longest)
            self._event(room, EventKind.OWNER, room.owner)
        return OK

    def keep_rooms(self) -> None:
        """An unregistered user registered its name: it stays a member of its rooms from now
        on, across logouts, as a registered member does, and owns those that had no owner."""
        if self._rooms is not None and self.name is not None:
            try:
                for room in self._rooms.registered(self.name):
                    self._event(room, EventKind.OWNER, self.name)
            except (DirectoryUnavailable, StoreUnavailable):
                # The name is registered all the same (its REGISTER is answered OK): only its
                # rooms keep it as the guest member it was.
                log.warning("registered %s: its rooms could not be told (the directory is unavailable)", self.name)

    def leave_rooms(self, why: str) -> None:
        """At logout of an unregistered user: out of every room, each told so and why
        (``why``: "logged out" or "disconnected", the event's detail)."""
        rooms, name = self._rooms, self.name
        if rooms is None or name is None or self._registered:
            return
        rooms.forget_invitations(name)
        for room in rooms.leave_all_unregistered(name):
            self._tell(room, encode(RoomEvent(room.name, EventKind.PARTED, name, why)))

    # --- Lists ------------------------------------------------------------------------------

    def last_message_id(self, name: str) -> int | None:
        """The id of the room's latest message (0: none yet); None if it cannot be read. (For
        the IRC port's replay of what a member missed: what came after it comes live.)"""
        try:
            room = self._rooms.get(name) if self._rooms is not None else None
        except (DirectoryUnavailable, StoreUnavailable):
            return None
        return room.last_id if room is not None else None

    def _list_rooms(self, event: ListRooms) -> bytes:
        assert self._rooms is not None
        self.hold_pushes()
        visible = self._rooms.visible_to(self.name)
        entries = [RoomEntry(r.name, r.flags_for(self.name), len(r.members)) for r in visible]
        # As many as fit in one frame: one's own rooms first, where not all do.
        entries = as_many_as_fit(entries, _room_entry_size, lambda entry: not entry.flags & RoomFlag.MEMBER, MAX_BODY)
        return encode(RoomList(tuple(entries)))

    def _list_members(self, event: ListMembers) -> bytes:
        self.hold_pushes()
        room, refused = self._visible_room(event.room)
        if room is None:
            return refused
        assert self._rooms is not None
        online = self._rooms.online(room, self._directory.find)
        owner, online_flag, owner_flag = room.owner, int(MemberFlag.ONLINE), int(MemberFlag.OWNER)
        members = [
            (name, MEMBER_FLAGS[online_flag * (name in online) + owner_flag * (name == owner)])
            for name in sorted(room.members)
        ]
        # As many as fit in one frame: the owner and those online first, where not all do.
        room_left = MAX_FRAME - len(encode(MemberList(room.name, room.topic, ())))
        members = as_many_as_fit(members, _member_size, lambda member: not member[1], room_left)
        return encode(MemberList(room.name, room.topic, tuple(members)))

    def _room_history(self, name: str, count: int, before: int) -> bytes:
        room, refused = self._member_room(name)
        if room is None:
            return refused
        if not 1 <= count <= MAX_HISTORY_COUNT:
            return self._failure(Reason.INVALID_COUNT)
        rows = self._accounts.store.room_history(room.name, count, before) if self._accounts is not None else []
        room_left = MAX_SERVER_BODY - len(encode(RoomHistory(room.name, ())))
        kept: list[RoomHistoryEntry] = []
        for row in reversed(rows):  # the newest that fit in one frame
            entry = RoomHistoryEntry(*row)
            room_left -= len(room_entry(entry))
            if room_left < 0:
                break
            kept.append(entry)
        return encode(RoomHistory(room.name, tuple(reversed(kept))))

    def _search(self, event: Search) -> bytes:
        """A registered user's own messages holding every word, newest first (all its
        conversations, or one: a name or a room it is in)."""
        accounts, rooms, name = self._accounts, self._rooms, self.name
        if not self._registered or accounts is None or name is None:
            return self._failure(Reason.NOT_REGISTERED)
        if not 1 <= event.count <= MAX_SEARCH_COUNT:
            return self._failure(Reason.INVALID_COUNT)
        if not event.query.strip() or len(event.query) > MAX_QUERY_CHARS:
            return self._failure(Reason.INVALID_TEXT)
        assert rooms is not None
        mine = sorted(rooms.rooms_of(name))
        peer = event.scope or None
        if peer is not None and peer.startswith("#"):
            if peer not in mine:
                return self._failure(Reason.NOT_A_MEMBER)
            mine = [peer]
        elif peer is not None:
            mine = []
        rows = accounts.store.search(name, event.query, peer, mine, event.count, event.before)
        room_left, kept = MAX_SERVER_BODY, []
        for row in rows:  # newest first: as many as fit in one frame
            found = Found(*row)
            room_left -= len(found_entry(found))
            if room_left < 0:
                break
            kept.append(found)
        return encode(SearchResults(tuple(kept)))

    # --- The owner's powers -------------------------------------------------------------------

    def _set_topic(self, event: SetTopic) -> bytes:
        room, refused = self._owned_room(event.room)
        if room is None:
            return refused
        if len(event.topic.encode()) > MAX_TOPIC_BYTES or not is_one_line(event.topic):
            return self._failure(Reason.INVALID_TEXT)
        room.topic = event.topic
        assert self._rooms is not None
        self._rooms.save(room)
        self._event(room, EventKind.TOPIC, event.topic)
        return OK

    def _kick(self, event: Kick) -> bytes:
        room, refused = self._owned_room(event.room)
        if room is None:
            return refused
        if event.name not in room.members or event.name == self.name:
            return self._failure(Reason.NOT_A_MEMBER)
        assert self._rooms is not None
        self._event(room, EventKind.REMOVED, event.name)
        self._rooms.uninvite(room, event.name)
        self._rooms.leave(room, event.name)
        return OK

    def _invite(self, event: Invite) -> bytes:
        room, refused = self._owned_room(event.room)
        if room is None:
            return refused
        if not is_valid_username(event.name) or event.name.startswith("#"):
            return self._failure(Reason.INVALID_NAME)
        assert self._rooms is not None
        registered = self._accounts is not None and event.name in self._accounts.registered_names
        if not self._rooms.invite(room, event.name, registered):
            return self._failure(Reason.ROOM_FULL, str(self._rooms.quotas.members_per_room))
        frame = encode(RoomEvent(room.name, EventKind.INVITED, self.name or "", event.name))
        self._tell(room, frame)
        invitee = self._directory.find(event.name)
        if invitee is not None and event.name not in room.members:  # told too, wherever they are
            if type(invitee) is _Remote:
                invitee.hand_over(frame)
            else:
                invitee.offer(frame)
        return OK

    def _set_invite_only(self, event: SetInviteOnly) -> bytes:
        room, refused = self._owned_room(event.room)
        if room is None:
            return refused
        room.invite_only = event.on
        assert self._rooms is not None
        self._rooms.save(room)
        self._event(room, EventKind.INVITE_ONLY, "on" if event.on else "off")
        return OK

    def _give_room(self, event: GiveRoom) -> bytes:
        room, refused = self._owned_room(event.room)
        if room is None:
            return refused
        if not room.members.get(event.name):  # a registered member only: the owner outlives logouts
            return self._failure(Reason.NOT_A_MEMBER)
        if event.name == room.owner:
            return OK  # (its own already: no change to tell)
        room.owner = event.name
        assert self._rooms is not None
        self._rooms.save(room)
        self._event(room, EventKind.OWNER, event.name)
        return OK

    # --- Which room -------------------------------------------------------------------------

    def _visible_room(self, name: str) -> "tuple[Room | None, bytes]":
        rooms = self._rooms
        assert rooms is not None
        # Looked up first: a room that exists has a valid name (asked of every room message,
        # the name's rules are only worth reading for a room that is not found).
        room = rooms.get(name)
        if room is None:
            return None, self._failure(Reason.NO_SUCH_ROOM if is_room_name(name) else Reason.INVALID_ROOM)
        if room.invite_only and self.name not in room.members and self.name not in room.invited:
            return None, self._failure(Reason.NO_SUCH_ROOM)
        return room, b""

    def _member_room(self, name: str) -> "tuple[Room | None, bytes]":
        if self.name is None:
            return None, self._failure(Reason.NOT_LOGGED_IN)
        room, refused = self._visible_room(name)
        if room is not None and self.name not in room.members:
            return None, self._failure(Reason.NOT_A_MEMBER)
        return room, refused

    def _owned_room(self, name: str) -> "tuple[Room | None, bytes]":
        room, refused = self._member_room(name)
        if room is not None and room.owner != self.name:
            return None, self._failure(Reason.NOT_OWNER)
        return room, refused


ROOM_ANSWERS: dict[type, Any] = {
    Join: RoomRules._join,
    Part: RoomRules._part,
    ListRooms: RoomRules._list_rooms,
    ListMembers: RoomRules._list_members,
    SetTopic: RoomRules._set_topic,
    Kick: RoomRules._kick,
    Invite: RoomRules._invite,
    SetInviteOnly: RoomRules._set_invite_only,
    GiveRoom: RoomRules._give_room,
    Search: RoomRules._search,
}


def _room_entry_size(entry: RoomEntry) -> int:
    return 1 + len(entry.name.encode()) + 5  # (ROOM-LIST: a name field, the flags, the members)


def _member_size(member: tuple[str, MemberFlag]) -> int:
    return 2 + len(member[0].encode())  # (MEMBER-LIST: the flags, a name field)
