"""Read markers in the cluster's store, for :class:`~.redis_store.RedisStore`: a hash per
account (``chatroom:markers:NAME``: conversation -> the id of the last message read), moved
only forward by a script; what came after each marker is counted from the newest messages of
the account's conversations (the same bounded scan as a search: see redis_search).
"""

from typing import TYPE_CHECKING

from ...device_frames import MOST_COUNTED, MOST_MARKERS
from ..message_ids import NODE_BITS
from .redis_rooms import ROOM, read_member
from .redis_search import SCAN_CONVERSATIONS, SINCE
from .store import now_ms

MARKERS = "chatroom:markers:"

# Ids exceed a Lua number's exact range (2^53): compared as decimal strings, by length first.
_MOVE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2]
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return false
end
if not old or #new > #old or (#new == #old and new > old) then
  redis.call('HSET', KEYS[1], ARGV[1], new)
  return new
end
return old
"""


class RedisMarkers:
    if TYPE_CHECKING:  # what RedisStore holds
        import redis

        _redis: redis.Redis | redis.RedisCluster
        _retention_ms: int

        def _call(self, method, *args, **kwargs): ...

        def _conversations_of(self, name: str, limit: int) -> list[tuple[str, str]]: ...

    def set_marker(self, name: str, conversation: str, message_id: int) -> int | None:
        moved = self._call(self._redis.eval, _MOVE, 1, MARKERS + name, conversation, str(message_id), MOST_MARKERS)
        return None if moved is None else int(moved)

    def partners(self, name: str) -> list[str]:
        return [other for _key, other in self._conversations_of(name, SCAN_CONVERSATIONS)]

    def unread(self, name: str, rooms: list[str]) -> list[tuple[str, int, int]]:
        markers = {c.decode(): int(m) for c, m in self._call(self._redis.hgetall, MARKERS + name).items()}
        since = self._call(self._redis.hget, SINCE, name)
        cutoff = max(now_ms() - self._retention_ms, int(since) if since is not None else 1 << 62)
        counts = {}
        for key, other in self._conversations_of(name, SCAN_CONVERSATIONS):
            marker = markers.get(other, 0)
            counts[other] = self._count_after(key, marker >> NODE_BITS, marker, name, cutoff)
        for room in rooms:
            marker = markers.get(room, 0)
            joined = self._call(self._redis.zscore, ROOM + room + ":members", name) or 0
            counts[room] = self._count_after(ROOM + room + ":messages", marker, marker, name, int(joined))
        conversations = sorted(set(markers) | {c for c, count in counts.items() if count})
        return [(c, markers.get(c, 0), counts.get(c, 0)) for c in conversations]

    def _count_after(self, key: str, score: int, marker: int, name: str, cutoff: int) -> int:
        """What others said in the conversation at key after marker (scored from score on)."""
        items = self._call(self._redis.zrangebyscore, key, score, "+inf", start=0, num=MOST_COUNTED + 64)
        count = 0
        for entry_id, time_ms, sender, _text in map(read_member, items):
            if entry_id > marker and sender != name and time_ms >= cutoff:
                count += 1
        return min(count, MOST_COUNTED)
