"""The cluster store's rooms, for :class:`~.redis_store.RedisStore`, every command on one key
(a Redis Cluster spreads rooms over its masters):

- ``chatroom:rooms`` is the set of kept rooms' names;
- ``chatroom:room:NAME`` a hash of its owner, topic and rule;
- ``chatroom:room:NAME:members`` a sorted set of its registered members, by when they joined;
- ``chatroom:room:NAME:invited`` a set;
- ``chatroom:room:NAME:messages`` a sorted set of its messages by id ("ID:JSON"), expiring
  with the history;
- ``chatroom:room:NAME:dropped`` the first id after the room was last dropped: what the room
  said before is not a room of that name's since (see delete_room), for as long as the history
  is kept.
"""

import json
from typing import TYPE_CHECKING

from ..message_ids import next_id
from .store import KeptRoom, now_ms

ROOMS = "chatroom:rooms"
ROOM = "chatroom:room:"


def message_member(message_id: int, time_ms: int, sender: str, text: str) -> str:
    """A message as a member of a history's sorted set (a room's, or a conversation's)."""
    return f"{message_id}:" + json.dumps([time_ms, sender, text])


def read_member(member: bytes) -> tuple[int, int, str, str]:
    """(id, time, sender, text) of a history's member (see message_member)."""
    message_id, _, entry = member.partition(b":")
    time_ms, sender, text = json.loads(entry)
    return int(message_id), time_ms, sender, text


class RedisRooms:
    if TYPE_CHECKING:  # what RedisStore holds
        import redis

        _redis: redis.Redis | redis.RedisCluster
        _retention_ms: int
        _keep_history: bool

        def _call(self, method, *args, **kwargs): ...

        def _queue_record(self, key: str, member: str, score: int) -> None: ...

        def _forget_records(self, key: str) -> None: ...

    def load_rooms(self):
        rooms = []
        for raw in self._call(self._redis.smembers, ROOMS):
            name = raw.decode()
            fields = self._call(self._redis.hgetall, ROOM + name)
            members = [m.decode() for m in self._call(self._redis.zrange, ROOM + name + ":members", 0, -1)]
            invited = [m.decode() for m in self._call(self._redis.smembers, ROOM + name + ":invited")]
            newest = self._call(self._redis.zrange, ROOM + name + ":messages", -1, -1, withscores=True)
            owner = fields.get(b"owner", b"").decode() or None
            topic = fields.get(b"topic", b"").decode()
            invite_only = fields.get(b"invite_only") == b"1"
            last_id = int(newest[0][1]) if newest else 0
            rooms.append(KeptRoom(name, owner, topic, invite_only, members, invited, last_id))
        return rooms

    def save_room(self, name, owner, topic, invite_only):
        mapping = {"owner": owner or "", "topic": topic, "invite_only": "1" if invite_only else "0"}
        self._call(self._redis.hset, ROOM + name, mapping=mapping)
        self._call(self._redis.sadd, ROOMS, name)

    def delete_room(self, name):
        # Its last messages queued here go with it (not to make the key again); those another
        # node had queued, or this one has on their way, may still be written after the history
        # is gone: a room of the same name leaves them out (see _dropped_at).
        self._forget_records(ROOM + name + ":messages")
        self._call(self._redis.set, ROOM + name + ":dropped", next_id()[0], px=self._retention_ms)
        self._call(self._redis.srem, ROOMS, name)
        for suffix in ("", ":members", ":invited", ":messages"):
            # (UNLINK: Redis frees a long history in a thread of its own; DEL held every node's
            # commands while it freed one: 36 ms for 300,000 messages, against 3 ms.)
            self._call(self._redis.unlink, ROOM + name + suffix)

    def add_member(self, room, name):
        self._call(self._redis.zadd, ROOM + room + ":members", {name: now_ms()}, nx=True)

    def remove_member(self, room, name):
        self._call(self._redis.zrem, ROOM + room + ":members", name)

    def add_invite(self, room, name):
        self._call(self._redis.sadd, ROOM + room + ":invited", name)

    def remove_invite(self, room, name):
        self._call(self._redis.srem, ROOM + room + ":invited", name)

    def record_room(self, room, message_id, sender, text, time_ms):
        """Queued with the conversations' records (see RedisStore.record): the sender of a
        room's message never waits on Redis for its history."""
        if self._keep_history:
            self._queue_record(ROOM + room + ":messages", message_member(message_id, time_ms, sender, text), message_id)

    def room_history(self, room, count, before):
        top = f"({before}" if before else "+inf"
        items = self._call(self._redis.zrevrangebyscore, ROOM + room + ":messages", top, "-inf", start=0, num=count)
        cutoff = now_ms() - self._retention_ms
        dropped_at = self._dropped_at(room)
        return [entry for entry in map(read_member, reversed(items)) if entry[1] >= cutoff and entry[0] > dropped_at]

    def _dropped_at(self, room: str) -> int:
        """The first id after room was last dropped (0: not within the history's time): its
        messages up to there were another room's, written after the drop."""
        dropped = self._call(self._redis.get, ROOM + room + ":dropped")
        return int(dropped) if dropped is not None else 0
