"""Search in the cluster's store, for :class:`~.redis_store.RedisStore`: Redis has no text
index here, so a search is a bounded scan of the newest messages of the user's conversations
(SCAN_MESSAGES of each, SCAN_CONVERSATIONS conversations at most), matching every word,
case-insensitively. Its limits are in docs/protocol.md.
"""

from typing import TYPE_CHECKING

from .redis_rooms import ROOM, read_member
from .store import now_ms

HISTORY = "chatroom:history:"
SINCE = "chatroom:accounts:since"  # name -> when its account was made (ms)


def conversation_key(one: str, other: str) -> str:
    """The key of the history of one's conversation with other."""
    first, second = sorted((one, other))
    return f"{HISTORY}{len(first)}:{first}:{second}"


def _glob(text: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


SCAN_MESSAGES = 2000
SCAN_CONVERSATIONS = 100


class RedisSearch:
    def _conversations_of(self, name: str, limit: int) -> list[tuple[str, str]]:
        """(key, the other name) of name's conversations, at most limit of them (SCAN)."""
        found: list[tuple[str, str]] = []
        for pattern in (f"{HISTORY}{len(name)}:{_glob(name)}:*", f"{HISTORY}*:*:{_glob(name)}"):
            for raw in self._redis.scan_iter(match=pattern, count=1000):
                key = raw.decode()
                length, _, rest = key[len(HISTORY) :].partition(":")
                if not length.isdigit():
                    continue
                first, second = rest[: int(length)], rest[int(length) + 1 :]
                if name in (first, second) and (key, second if first == name else first) not in found:
                    found.append((key, second if first == name else first))
                if len(found) >= limit:
                    return found
        return found

    if TYPE_CHECKING:  # what RedisStore holds
        import redis

        _redis: redis.Redis | redis.RedisCluster
        _retention_ms: int

        def _call(self, method, *args, **kwargs): ...

        def _dropped_at(self, room: str) -> int: ...

    def search(self, name, query, peer, rooms, count, before):
        words = query.casefold().split()
        before = before or (1 << 62)
        cutoff = now_ms() - self._retention_ms
        since = self._call(self._redis.hget, SINCE, name)
        since = int(since) if since is not None else before  # (no account: nothing of its own)
        if peer is not None and not peer.startswith("#"):
            keys = [(conversation_key(name, peer), peer)]
        elif peer is not None:
            keys = []
        else:
            keys = [(key, other) for key, other in self._conversations_of(name, SCAN_CONVERSATIONS)]
        keys += [(ROOM + room + ":messages", room) for room in rooms]
        found = []
        for key, conversation in keys[:SCAN_CONVERSATIONS]:
            is_room = conversation.startswith("#")
            oldest = cutoff if is_room else max(cutoff, since)
            dropped_at = self._dropped_at(conversation) if is_room else 0
            newest = self._call(self._redis.zrevrange, key, 0, SCAN_MESSAGES - 1)
            for entry_id, time_ms, sender, text in map(read_member, newest):
                if entry_id <= dropped_at or not oldest <= time_ms < before:
                    continue
                if all(word in text.casefold() for word in words):
                    found.append((time_ms, entry_id, conversation, sender, text))
        return sorted(found, reverse=True)[:count]
