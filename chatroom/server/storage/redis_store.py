"""The cluster's store: accounts, offline messages and history in Redis, shared by every node.

- ``chatroom:accounts`` is a hash from name to password hash; HSETNX registers a name once,
  cluster-wide. Each node also keeps the set of registered names, loaded at start and told
  of new ones on the ``chatroom:accounts:new`` channel, so that routing a message never
  waits on Redis to learn whether its recipient is registered;
- ``chatroom:token:HASH`` names the user a session token was issued to, expiring with it;
  ``chatroom:token-times:NAME`` is a sorted set of a user's token hashes, scored by expiry
  (``chatroom:tokens:NAME``, a set of them, was its place before tokens were bounded: read
  when revoking them all, until it expires);
- ``chatroom:offline:NAME`` is a list of the messages kept for NAME, oldest first;
- ``chatroom:history:FIRST:SECOND`` is a sorted set of one conversation's messages (the two
  names in code point order), scored by an id that grows within the conversation.

Every command touches one key, so that in a Redis Cluster each goes to the master of its
key's slot: accounts, offline messages and history spread over every master. Entries are
JSON arrays. They expire by time, checked when read and trimmed when written.
"""

import json
import logging
from collections.abc import Collection

import gevent
import redis

from ...protocol import HistoryEntry, StoredMessage
from ..message_ids import NODE_BITS
from ..presence.redis_link import RedisTooOld, forget_topology, redis_client, some_node, store_client
from .quotas import Quotas
from .redis_markers import RedisMarkers
from .redis_rooms import RedisRooms, message_member, read_member
from .redis_search import SINCE, RedisSearch, conversation_key
from .store import DEFAULT_HISTORY_DAYS, MAX_OFFLINE, StoreUnavailable, now_ms

log = logging.getLogger(__name__)

ACCOUNTS = "chatroom:accounts"
NEW_ACCOUNTS = "chatroom:accounts:new"
OFFLINE = "chatroom:offline:"
TOKEN = "chatroom:token:"  # + a session token's hash: the name it was issued to, until it expires
TOKEN_TIMES = "chatroom:token-times:"  # + name: its tokens' hashes by expiry (to revoke the oldest, or all)
OLD_TOKENS = "chatroom:tokens:"  # + name: a set of its tokens' hashes, as kept before TOKEN_TIMES
RETRY_PAUSE = 0.5
OLD_IDS = 1 << 40  # ids below it were counted per conversation (before message_ids), scores as they are
SAME_SCORE = 16  # history entries read beyond a page, in case they share the bound's score
POOL_SIZE = 16
DEFAULT_QUOTAS = Quotas()

# Keep messages for an offline user (KEYS[1], a list of JSON entries [sender, time, text],
# oldest first), as many as fit in order: at most ARGV[1] messages and ARGV[3] bytes, of which
# one sender may fill ARGV[4] messages and ARGV[5] bytes. Entries older than ARGV[6] (ms) go
# first: expiry on write. The list lives ARGV[2] ms. Then ARGV[7]... pairs: how the sender's
# entries begin, and the entry. Answers how many were kept.
_KEEP_OFFLINE = """
while true do
  local oldest = redis.call('LINDEX', KEYS[1], 0)
  if not oldest or cjson.decode(oldest)[2] >= tonumber(ARGV[6]) then break end
  redis.call('LPOP', KEYS[1])
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local count, size, senders = #items, 0, {}
for _, item in ipairs(items) do
  size = size + #item
end
local kept = 0
for i = 7, #ARGV, 2 do
  local prefix, entry = ARGV[i], ARGV[i + 1]
  local share = senders[prefix]
  if not share then
    share = {0, 0}
    for _, item in ipairs(items) do
      if string.sub(item, 1, #prefix) == prefix then
        share[1], share[2] = share[1] + 1, share[2] + #item
      end
    end
    senders[prefix] = share
  end
  if count >= tonumber(ARGV[1]) or size + #entry > tonumber(ARGV[3])
      or share[1] >= tonumber(ARGV[4]) or share[2] + #entry > tonumber(ARGV[5]) then
    break
  end
  redis.call('RPUSH', KEYS[1], entry)
  count, size, kept = count + 1, size + #entry, kept + 1
  share[1], share[2] = share[1] + 1, share[2] + #entry
end
if kept > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return kept
"""
# Add messages to a history (KEYS[1]: a conversation's, or a room's) and renew its expiry at
# one go, never a key left without one: ARGV[1] how long it lives (ms), then a score and a
# member for each message. The member is "ID:ENTRY" (so that two equal messages stay two);
# the score, a conversation's message id without its node tag (a double holds it exactly;
# ids of one score sort by member, their digits all as many), or a room's message id.
_RECORD = """
redis.call('ZADD', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
RECORDS_PER_CALL = 500  # a history's entries in one call, at most (Lua's unpack has a limit)


# Add a token's hash (ARGV[1]) to a name's tokens by expiry (KEYS[1]) with its expiry (ARGV[2],
# ms), forget those expired by now (ARGV[3]; the set lives as long as its newest), and take out
# the oldest past the ARGV[4] newest (never the one added, which may share its millisecond with
# them): answers their hashes, whose keys the caller deletes (in a Redis Cluster, elsewhere).
_ADD_TOKEN = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
if newest then redis.call('PEXPIREAT', KEYS[1], newest) end
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if excess <= 0 then return {} end
local taken = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess)) do
  if member ~= ARGV[1] and #taken < excess then table.insert(taken, member) end
end
redis.call('ZREM', KEYS[1], unpack(taken))
return taken
"""


class RedisStore(RedisRooms, RedisSearch, RedisMarkers):
    def __init__(
        self,
        url: str,
        history_days: float = DEFAULT_HISTORY_DAYS,
        keep_history: bool = True,
        quotas: Quotas = DEFAULT_QUOTAS,
    ):
        try:
            self._redis = store_client(url, POOL_SIZE)
        except (redis.RedisError, RedisTooOld) as err:
            raise StoreUnavailable(str(err)) from err
        self._url = url
        self._retention_ms = int(history_days * 86_400_000)
        self._keep_history = keep_history
        self._known: set[str] = set()
        self.registered_names: Collection[str] = self._known
        self._keep_offline = self._redis.register_script(_KEEP_OFFLINE)
        self._quotas = quotas
        self._records: list = []  # (key, entry) waiting for the recorder
        self._recorder = None  # the greenlet writing them, while there are any
        self._listener = None

    def start(self) -> None:
        self._listener = gevent.spawn(self._listen_for_accounts)
        self._known |= _names(self._call(self._redis.hkeys, ACCOUNTS))

    def stop(self) -> None:
        if self._recorder is not None:
            self._recorder.join(timeout=2.0)  # what was acknowledged goes in before the end
        if self._listener is not None:
            self._listener.kill()
        self._redis.close()

    def _listen_for_accounts(self):
        while True:
            # Any node of a Redis Cluster hears every PUBLISH: take one the cluster knows now,
            # so that losing the node --redis named does not cut this node off new accounts.
            address = some_node(self._redis, self._url)
            subscriber = redis_client(address, socket_connect_timeout=1.0, socket_keepalive=True)
            pubsub = subscriber.pubsub()
            try:
                pubsub.subscribe(NEW_ACCOUNTS)
                if pubsub.get_message(timeout=2.0) is None:  # subscribed: no new name slips by now...
                    raise redis.TimeoutError("no answer to SUBSCRIBE")
                self._known |= _names(self._redis.hkeys(ACCOUNTS))  # ...and none made meanwhile is missed
                for message in pubsub.listen():
                    if message["type"] == "message":
                        self._known |= _names([message["data"]])
            except redis.RedisError:
                pass  # the directory logs Redis going away
            finally:
                pubsub.close()
                subscriber.close()
            gevent.sleep(RETRY_PAUSE)

    def healthy(self) -> bool:
        return True  # Redis being away is the directory's to report (the same Redis)

    def _call(self, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except redis.RedisError as err:
            raise StoreUnavailable(str(err)) from err

    # --- Accounts -----------------------------------------------------------------------

    def password_hash(self, name):
        value = self._call(self._redis.hget, ACCOUNTS, name)
        if value is None:
            return None
        self._known.add(name)
        return value.decode()

    def create_account(self, name, password_hash):
        if not self._call(self._redis.hsetnx, ACCOUNTS, name, password_hash):
            return False
        # (Written second: an account whose time was never written sees no history at all.)
        self._call(self._redis.hset, SINCE, name, now_ms())
        self._known.add(name)
        self._call(self._redis.publish, NEW_ACCOUNTS, name)
        return True

    def set_password_hash(self, name, password_hash):
        self._call(self._redis.hset, ACCOUNTS, name, password_hash)

    # --- Offline messages ---------------------------------------------------------------

    def add_token(self, token_hash, name, expires_ms, most):
        self._call(self._redis.set, TOKEN + token_hash, name, pxat=expires_ms)
        oldest = self._call(self._redis.eval, _ADD_TOKEN, 1, TOKEN_TIMES + name, token_hash, expires_ms, now_ms(), most)
        for old_hash in oldest:
            self._call(self._redis.delete, TOKEN + old_hash.decode())

    def token_owner(self, token_hash):
        value = self._call(self._redis.get, TOKEN + token_hash)
        return value.decode() if value is not None else None

    def revoke_token(self, token_hash):
        self._call(self._redis.delete, TOKEN + token_hash)

    def revoke_tokens(self, name):
        hashes = self._call(self._redis.zrange, TOKEN_TIMES + name, 0, -1)
        hashes += self._call(self._redis.smembers, OLD_TOKENS + name)
        for token_hash in hashes:
            self._call(self._redis.delete, TOKEN + token_hash.decode())
        self._call(self._redis.delete, TOKEN_TIMES + name)
        self._call(self._redis.delete, OLD_TOKENS + name)

    def keep_offline(self, recipient, sender, text, time_ms, message_id):
        return self.keep_dropped(recipient, [(sender, text, message_id)], time_ms) == 1

    def keep_dropped(self, recipient, messages, time_ms):
        if not messages:
            return 0
        quotas, size = self._quotas, int(self._quotas.mailbox_mb * 1_000_000)
        args: list = [
            MAX_OFFLINE,
            self._retention_ms,
            size,
            max(1, int(MAX_OFFLINE * quotas.mailbox_share)),
            max(1, int(size * quotas.mailbox_share)),
            time_ms - self._retention_ms,
        ]
        for sender, text, message_id in messages:
            entry = json.dumps([sender, time_ms, text, message_id])
            args += [json.dumps([sender])[:-1] + ",", entry]  # how its entries begin, the entry
        return int(self._call(self._keep_offline, keys=[OFFLINE + recipient], args=args))

    def offline_page(self, name, limit):
        cutoff = now_ms() - self._retention_ms
        items = self._call(self._redis.lrange, OFFLINE + name, 0, limit - 1)
        entries = (json.loads(item) + [0] for item in items)  # (an entry kept before ids had none)
        messages = [StoredMessage(e[0], e[1], e[2], e[3]) for e in entries if e[1] >= cutoff]
        return len(items), messages  # the mark: how many from the head of the list

    def remove_offline(self, name, mark):
        if mark:
            self._call(self._redis.ltrim, OFFLINE + name, mark, -1)

    # --- History ------------------------------------------------------------------------

    def record(self, sender, recipient, text, time_ms, message_id):
        """Queue the message for the history; the relay path never waits on Redis for it.
        What is queued meanwhile goes in one round trip."""
        if not self._keep_history:
            return
        member = message_member(message_id, time_ms, sender, text)
        self._queue_record(conversation_key(sender, recipient), member, message_id >> NODE_BITS)

    def _queue_record(self, key: str, member: str, score: int) -> None:
        """A history's sorted set takes member at score, with what is queued meanwhile."""
        self._records.append((key, member, score))
        if self._recorder is None:
            self._recorder = gevent.spawn(self._write_records)

    def _write_records(self):
        try:
            while self._records:
                records, self._records = self._records, []
                # One call a history (a busy room's or conversation's many entries in one).
                entries: dict[str, list] = {}
                for key, member, score in records:
                    entries.setdefault(key, []).extend((score, member))
                pipe = self._redis.pipeline(transaction=False)
                for key, pairs in entries.items():
                    for start in range(0, len(pairs), 2 * RECORDS_PER_CALL):
                        # EVAL, not EVALSHA: a Redis Cluster pipeline takes no EVALSHA (nor its
                        # eval method), and a master that restarted has forgotten the script.
                        chunk = pairs[start : start + 2 * RECORDS_PER_CALL]
                        pipe.execute_command("EVAL", _RECORD, 1, key, self._retention_ms, *chunk)
                try:
                    pipe.execute()
                except redis.RedisError as err:
                    log.warning("%d messages not recorded in the history: %s", len(records), err)
                    forget_topology(self._redis)
        finally:
            self._recorder = None

    def _forget_records(self, key: str) -> None:
        """Drop the records queued for key's history (a history deleted now, not to be written
        again after)."""
        self._records = [record for record in self._records if record[0] != key]

    def history(self, name, peer, count, before):
        since = self._call(self._redis.hget, SINCE, name)
        if since is None:
            return []
        # Scores are ids without their node tags: the ids just under ``before`` may share its
        # score, so that score is read too, and what is not below ``before`` dropped.
        top = before >> NODE_BITS if before >= OLD_IDS else f"({before}" if before else "+inf"
        key = conversation_key(name, peer)
        items = self._call(self._redis.zrevrangebyscore, key, top, "-inf", start=0, num=count + SAME_SCORE)
        # Only what was said since name's account was made (see SINCE).
        cutoff = max(now_ms() - self._retention_ms, int(since))
        entries = []
        for entry_id, time_ms, sender, text in map(read_member, items):
            if time_ms >= cutoff and (not before or entry_id < before):
                entries.append(HistoryEntry(entry_id, time_ms, sender == name, text))
        return sorted(entries, key=lambda entry: entry.id)[-count:]


def _names(values) -> set[str]:
    return {value.decode() if isinstance(value, bytes) else value for value in values}
