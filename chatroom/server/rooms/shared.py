"""Rooms shared by a cluster's nodes, in the directory's Redis (its slot, so that a script can
give a message its id and publish it to every node with members in one atomic step).

- ``{chatroom}:rooms`` the rooms' names; ``{chatroom}:room-skeletons`` look-alike key -> room;
- ``{chatroom}:room:NAME`` a hash: owner, topic, invite_only, last (the last message's id);
- ``{chatroom}:room:NAME:members`` a sorted set of members by when they joined,
  ``...:registered`` the registered ones, ``...:invited`` the invitations;
- ``{chatroom}:user-rooms:NAME`` the rooms a user is in.

**One order**: a message's script takes the room's next id and publishes the message, once
per node with members (its own node too), to their inboxes; Redis runs scripts one at a time
and a subscriber gets what was published in that order, so every node, and every member,
gets a room's messages in the order of their ids. The sender's node hands its copy to its
members from its inbox, like any other; the sender is answered once that is done.

A message's sender is checked for membership by the script that posts it; the rules of
joining are checked in Python, step by step: two joins racing for the last place of a full
room may both get in (the limits are guards, not promises).
"""

import logging

import gevent
from gevent.event import AsyncResult

from ...codec import Decoder, name_field
from ...fields import split_id_and_time
from ...protocol import Reason
from ...room_frames import ROOM_MESSAGE, EventKind, RoomEvent, RoomMessage
from ..connection.fanout import offer_each
from ..storage.quotas import Quotas
from ..storage.store import now_ms
from .posting import Poster
from .registry import DEFAULT_QUOTAS, Joined, Room, look_alike_key, may_invite, refusal
from .room_scripts import JOIN, LEAVE, POST, REGISTERED, TELL

log = logging.getLogger(__name__)

ROOMS = "{chatroom}:rooms"
SKELETONS = "{chatroom}:room-skeletons"
ROOM = "{chatroom}:room:"
USER_ROOMS = "{chatroom}:user-rooms:"
GUEST_INVITES = "{chatroom}:guest-invites:"  # an unregistered name -> the rooms it is invited to
POSTED_WAIT = 1.0  # how long a sender waits for its node to hand its message out


def _room_keys(room: str, user: str) -> list[str]:
    key = ROOM + room
    return [key, key + ":members", key + ":registered", ROOMS, SKELETONS, USER_ROOMS + user, key + ":invited"]


class SharedRooms:
    """The Rooms of a cluster node (see registry.Rooms for what each method means)."""

    def __init__(self, directory, quotas: Quotas = DEFAULT_QUOTAS, store=None):
        self._directory = directory  # a RedisDirectory: its client, scripts' keys, local users
        self._store = store  # the cluster's store, for a room's history
        self._quotas = quotas
        self._here: dict[str, set[str]] = {}  # room -> its members logged in on this node
        self._sinks_here: dict[str, tuple[int, list]] = {}  # room -> (the names' changes, their sinks)
        self._posted: dict[tuple[str, int], AsyncResult] = {}  # own messages, until handed out here
        self._handed: dict[str, tuple[int, int]] = {}  # room -> (the last id handed out here, to how many)
        self._scripts: tuple | None = None  # (the client, its tell, join, leave and post scripts)
        self._poster = Poster(
            lambda: self._script(3),
            directory.redis_call,
            [directory.users_key],
            [directory.node_prefix, directory.inbox_prefix],
        )

    def start(self) -> None:
        self._directory.on_room_envelope = self._hand_out

    # --- Reading --------------------------------------------------------------------------

    def _call(self, name: str, *args, **kwargs):
        client = self._directory.redis
        return self._directory.redis_call(getattr(client, name), *args, **kwargs)

    def get(self, name: str) -> Room | None:
        key = ROOM + name
        pipe = self._directory.redis.pipeline(transaction=False)
        pipe.hgetall(key)
        pipe.zrange(key + ":members", 0, -1)
        pipe.smembers(key + ":registered")
        pipe.smembers(key + ":invited")
        fields, members, registered, invited = self._directory.redis_call(pipe.execute)
        if b"topic" not in fields:  # (a room gone keeps only its last id)
            return None
        kept = {m.decode() for m in registered}
        room = Room(
            name,
            fields.get(b"owner", b"").decode() or None,
            fields.get(b"topic", b"").decode(),
            fields.get(b"invite_only") == b"1",
            {m.decode() for m in invited},
            last_id=int(fields.get(b"last", b"0")),
        )
        room.members = {m.decode(): m.decode() in kept for m in members}
        return room

    def rooms_of(self, user: str) -> set[str]:
        return {room.decode() for room in self._call("smembers", USER_ROOMS + user)}

    def company(self, user: str) -> set[str]:
        pipe = self._directory.redis.pipeline(transaction=False)
        for name in self.rooms_of(user):
            pipe.zrange(ROOM + name + ":members", 0, -1)
        return {member.decode() for members in self._directory.redis_call(pipe.execute) for member in members}

    def visible_to(self, user: str | None) -> list[Room]:
        own = self.rooms_of(user) if user else set()
        rooms = [self.get(name.decode()) for name in self._call("smembers", ROOMS)]
        visible = [r for r in rooms if r is not None and (not r.invite_only or r.name in own or user in r.invited)]
        return sorted(visible, key=lambda room: room.name)

    def online(self, room: Room, find) -> set[str]:
        pipe = self._directory.redis.pipeline(transaction=False)
        names = list(room.members)
        for name in names:
            pipe.hexists(self._directory.users_key, name)
        return {name for name, there in zip(names, self._directory.redis_call(pipe.execute), strict=True) if there}

    def counts(self) -> tuple[int, int]:
        return self._call("scard", ROOMS), sum(len(members) for members in self._here.values())

    # --- Membership -----------------------------------------------------------------------

    def join(self, name: str, user: str, registered: bool) -> Joined:
        room = self.get(name)
        if room is not None and user in room.members:
            return Joined(room)
        rooms_of_user = self._call("scard", USER_ROOMS + user)
        refused = refusal(room, user, rooms_of_user, lambda: self._call("scard", ROOMS), self._quotas)
        if refused is not None:
            return refused
        # Made (if it is not there now) and joined at one go: a room emptied meanwhile by its
        # last member on another node is made again, never joined half-deleted.
        args = [user, name, look_alike_key(name), user if registered else "", "1" if registered else "0", now_ms()]
        look_alike = self._directory.redis_call(self._script(1), keys=_room_keys(name, user), args=args)
        if look_alike:
            return Joined(None, reason=Reason.LOOKS_LIKE, detail=look_alike.decode())
        self._add_here(name, user)
        # The room as read before, with its new member: what the rules do with it next (the
        # invitation used, the event told) reads its name and invitations, and reading every
        # member again made a storm of joins to a large room cost twice over.
        if room is None:
            room = Room(name, user if registered else None)
        room.members[user] = registered
        return Joined(room, new=True)

    def leave(self, room: Room, user: str) -> None:
        """Out of the room (gone with its last member, at one go); an owner who leaves hands it
        to the registered member who has been there longest."""
        args = [user, room.name, look_alike_key(room.name)]
        left = self._directory.redis_call(self._script(2), keys=_room_keys(room.name, user), args=args)
        room.members.pop(user, None)
        # (Its sessions here are forgotten as the event of its leaving, told before, is handed
        # out to them by the inbox: forgotten now, they would never be told they were removed.)
        if not left and self._store is not None:
            self._store.delete_room(room.name)  # its history goes with it
        elif left and room.owner == user:
            room.owner = next((name for name, kept in room.members.items() if kept), None)
            self.save(room)

    def claim(self, room: Room, user: str) -> bool:
        """A room without an owner is its first registered member's: user's, now (False where
        it has one, on any node)."""
        if room.owner is not None or not self._owns_now(room.name, user, claim_only=True):
            return False
        room.owner = user
        return True

    def registered(self, user: str) -> list[Room]:
        """User's name was registered while it was on: a registered member of its rooms (and
        its invitations kept, as a registered name's are), and the owner of those that had
        none (the rooms it owns now)."""
        self._call("delete", GUEST_INVITES + user)
        claimed = []
        for name in self.rooms_of(user):
            if self._owns_now(name, user, claim_only=False) and (room := self.get(name)) is not None:
                claimed.append(room)
        return claimed

    def _owns_now(self, name: str, user: str, claim_only: bool) -> bool:
        key = ROOM + name
        keys = [key + ":members", key + ":registered", key]
        return self._directory.redis_call(self._script(4), keys=keys, args=[user, "1" if claim_only else "0"]) == 1

    def leave_all_unregistered(self, user: str) -> list[Room]:
        rooms = [room for name in sorted(self.rooms_of(user)) if (room := self.get(name)) is not None]
        for room in rooms:
            self.leave(room, user)
        return rooms

    def logged_in(self, user: str, registered: bool) -> None:
        """User logged in here: messages to their rooms are handed to them from now on. A
        membership the name holds as an unregistered one is stale (its node died before the
        logout could end it): whoever logs in with the name now never inherits it."""
        for name in self.rooms_of(user):
            room = self.get(name)
            if room is None or not room.members.get(user, False) or not registered:
                if room is not None:
                    self.leave(room, user)  # (no event: nobody was told it is there)
                    self._forget_here(name, user)
                else:
                    self._call("srem", USER_ROOMS + user, name)
                continue
            self._add_here(name, user)

    def logged_out(self, user: str) -> None:
        for name in list(self._here):
            self._forget_here(name, user)

    def save(self, room: Room) -> None:
        fields = {"owner": room.owner or "", "topic": room.topic, "invite_only": "1" if room.invite_only else "0"}
        self._call("hset", ROOM + room.name, mapping=fields)

    @property
    def quotas(self) -> Quotas:
        return self._quotas

    def invite(self, room: Room, user: str, registered: bool) -> bool:
        if not may_invite(room, user, self._quotas):  # (as read with the room: nodes may pass it by a few)
            return False
        room.invited.add(user)
        self._call("sadd", ROOM + room.name + ":invited", user)
        if not registered:
            self._call("sadd", GUEST_INVITES + user, room.name)
        return True

    def uninvite(self, room: Room, user: str) -> None:
        room.invited.discard(user)
        # (Asked at every join: one round trip, whether a guest's invitation or not.)
        pipe = self._directory.redis.pipeline(transaction=False)
        pipe.srem(ROOM + room.name + ":invited", user)
        pipe.srem(GUEST_INVITES + user, room.name)
        self._directory.redis_call(pipe.execute)

    def forget_invitations(self, user: str) -> None:
        """At the logout of an unregistered user: its name's invitations end with it (the
        next to take the name is someone else)."""
        invited = self._call("smembers", GUEST_INVITES + user)
        if invited:  # (most guests have none: one round trip)
            pipe = self._directory.redis.pipeline(transaction=False)
            for name in invited:
                pipe.srem(ROOM + name.decode() + ":invited", user)
            pipe.delete(GUEST_INVITES + user)
            self._directory.redis_call(pipe.execute)

    # --- Delivery -------------------------------------------------------------------------

    def _script(self, which: int):
        """The tell (0), join (1), leave (2), post (3: the poster's) or registered (4) script,
        on the directory's client of the moment."""
        client = self._directory.redis
        if self._scripts is None or self._scripts[0] is not client:
            self._scripts = (client, *(client.register_script(lua) for lua in (TELL, JOIN, LEAVE, POST, REGISTERED)))
        return self._scripts[1 + which]

    def tell(self, room: Room, frame: bytes, directory) -> int:
        """Publish frame to every node with members; this node's are handed it by its inbox."""
        script = self._script(0)
        keys = [self._directory.users_key, ROOM + room.name + ":members"]
        envelope = name_field(room.name) + frame
        args = [self._directory.node_prefix, self._directory.inbox_prefix, envelope]
        self._directory.redis_call(script, keys=keys, args=args)
        return 0

    def post(self, name: str, sender: str, text: bytes, directory) -> tuple[int, int, int] | None:
        # Membership is checked by the script that posts (with the other messages posted
        # meanwhile: see posting.py): no reading of the room's members here.
        time_ms = now_ms()
        keys, args = [ROOM + name + ":members", ROOM + name], [name, sender, time_ms, text]
        message_id = int(self._poster.post(keys, args, len(text)))
        if not message_id:
            return None
        # The inbox may have handed it out before the script's answer came (no wait is needed
        # then); a room's ids come to it in order.
        last_id, taken = self._handed.get(name, (0, 0))
        if last_id >= message_id:
            return message_id, time_ms, taken if last_id == message_id else 0
        handed = self._posted[(name, message_id)] = AsyncResult()
        try:
            delivered = handed.get(timeout=POSTED_WAIT)
        except gevent.Timeout:  # (a BaseException: `except Exception` would let it end the session)
            delivered = 0  # published to every node; this one's copy is late (its inbox will hand it out)
        finally:
            self._posted.pop((name, message_id), None)
        return message_id, time_ms, delivered

    def _hand_out(self, room: str, frame: bytes) -> None:
        """(The inbox's greenlet.) A room's frame, to its members logged in here, in the order
        it came."""
        if frame[0] == ROOM_MESSAGE:  # (most of what comes: read without a decoder)
            sender_at = 6 + frame[5]
            message_id = split_id_and_time(frame, sender_at + 1 + frame[sender_at])[0]
            self._handed_out(room, message_id, offer_each(self._sinks(room), frame))
            return
        find = self._directory.local.find
        events = Decoder.for_client().receive_data(frame)
        for event in events:
            if type(event) is RoomEvent and event.kind is EventKind.JOINED and find(event.actor) is not None:
                # (one of the user's devices joined, maybe at another node: this one's too)
                self._add_here(room, event.actor)
        taken = offer_each(self._sinks(room), frame)
        for event in events:
            if type(event) is RoomMessage:
                self._handed_out(room, event.id, taken)
            elif type(event) is RoomEvent and event.kind is EventKind.REMOVED:
                self._forget_here(room, event.detail)
            elif type(event) is RoomEvent and event.kind is EventKind.PARTED:
                self._forget_here(room, event.actor)

    def _handed_out(self, room: str, message_id: int, taken: int) -> None:
        self._handed[room] = (message_id, taken)
        waiting = self._posted.get((room, message_id))
        if waiting is not None:
            waiting.set(taken)

    def _sinks(self, room: str) -> list:
        """The room sinks of the room's members here, found once and kept until they change
        or this node's names do (as registry.Rooms.tell keeps them)."""
        members = self._here.get(room)
        if not members:
            return []  # (nothing kept for a room with nobody here)
        local = self._directory.local
        kept = self._sinks_here.get(room)
        if kept is None or kept[0] != local.changes:
            find = local.find
            sinks = [mailbox.room_sink() for name in members if (mailbox := find(name)) is not None]
            kept = self._sinks_here[room] = (local.changes, sinks)
        return kept[1]

    def _add_here(self, room: str, user: str) -> None:
        self._here.setdefault(room, set()).add(user)
        self._sinks_here.pop(room, None)

    def _forget_here(self, room: str, user: str) -> None:
        members = self._here.get(room)
        self._sinks_here.pop(room, None)
        if members is not None:
            members.discard(user)
            if not members:
                del self._here[room]
                self._handed.pop(room, None)
