"""The directory's keys in Redis, and the Lua scripts that change them atomically.

Each script is called through a method of :class:`Scripts` with named arguments, so that
the positions of its KEYS and ARGV are written down here only, next to the Lua that reads
them. Every key and channel carries the hash tag ``{chatroom}``: one slot, so that a claim or
a batch is one atomic script in a Redis Cluster too (see redis_link).
"""

from ..redis_link import run_script
from .handing import HAND, LIVE, TELL_SHARED

USERS = "{chatroom}:users"  # username -> its holders, "NODE:LEASE" each (see handing.LIVE)
LOOK_ALIKES = "{chatroom}:skeletons"  # confusable skeleton -> the name logged in with it
EPOCH = "{chatroom}:epoch"
RECOVERING = "{chatroom}:recovering"
NODE = "{chatroom}:node:"  # + node id: the node's lease, expiring TTL seconds after its last heartbeat
INBOX = "{chatroom}:inbox:"  # + node id: the node's sharded pub/sub channel, and its stream
AWAY = "{chatroom}:away"  # username -> its away message, while it is away
DEVICE_BASES = "{chatroom}:device-bases"  # username -> the last base a node numbered its devices from
SESSIONS = "{chatroom}:sessions:"  # + username: node id -> its devices of the name, as a SESSION-LIST frame
BATCH = "{chatroom}:batch:"  # + node id and number: a batch's answers, for a sender that lost them

# Redis may lose its data (a restart without persistence): then every node must register its
# users again before anyone may take a name, or a name could be held twice. An *epoch* key,
# made by the first node that finds it missing, marks the data a node registered its users
# in; while ``recovering`` lasts (HALF a TTL, more than the heartbeat period in which every
# live node notices the new epoch), only re-registrations may claim names.
#
# A node holds its names under a *lease*: a token kept in its key while its heartbeats come in
# time. A node that stalls past its TTL (paused, starved) loses the lease, and with it every
# claim made under it: another node may then take its names, and the stale node, when it
# resumes, gets a new lease and must claim its users again (losing those taken meanwhile).
#
# The heartbeat: KEYS epoch, recovering, this node's key; ARGV a new epoch, the recovery in ms,
# the TTL in s, a new lease, and the lease the node believes it holds. Answers {epoch, the
# lease the node holds now (a new one if the old one had lapsed), the ms left of the recovery
# (negative: none)}: a node that starts waits out a recovery, its own or another's.
_BEAT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
end
local lease = redis.call('GET', KEYS[3])
if lease ~= ARGV[5] then
  lease = ARGV[4]
end
redis.call('SET', KEYS[3], lease, 'EX', ARGV[3])
return {epoch, lease, redis.call('PTTL', KEYS[2])}
"""
# Take a name (ARGV[1], skeleton ARGV[4]) for this node (ARGV[2], its lease ARGV[7]) unless a
# live holder on another node has it, or has another name with the same skeleton; ARGV[8] '1'
# for a shared claim (a registered user's device: it joins a shared value's holders, and the
# other nodes are told). A skeleton entry whose name is no longer held live is stale and taken
# over. KEYS[3], KEYS[4], ARGV[5], ARGV[6]: the epoch, the recovery, the epoch this node
# registered its users in, and '1' for a re-registration; ARGV[9] the inbox prefix; KEYS[5],
# KEYS[6] the device bases and the name's sessions (see elsewhere.py). Answers 1 (taken), 1 + a
# base (taken, with the user's devices on other nodes too: this node numbers its own from the
# base on), 0 (in use), -1 (not now: Redis lost its data and the nodes are registering again)
# or -2 (this node's lease has lapsed: it must beat again first, so that a stale node's claim
# never wins).
_CLAIM = (
    LIVE
    + HAND
    + TELL_SHARED
    + """
if redis.call('GET', ARGV[3] .. ARGV[2]) ~= ARGV[7] then
  return -2
end
local epoch = redis.call('GET', KEYS[3])
if epoch ~= ARGV[5] then
  return -1
end
if ARGV[6] ~= '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  return -1
end
local shared = ARGV[8] == '1'
local holders, nodes = {}, {}
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value then
  local live_nodes, entries = live_holders(value, ARGV[3])
  for i, node in ipairs(live_nodes) do
    if node ~= ARGV[2] then
      table.insert(nodes, node)
      table.insert(holders, entries[i])
    end
  end
  if #holders > 0 and not (shared and string.sub(value, 1, 1) == '*') then
    return 0
  end
end
if #holders == 0 then
  local other = redis.call('HGET', KEYS[2], ARGV[4])
  if other and other ~= ARGV[1] then
    local other_value = redis.call('HGET', KEYS[1], other)
    if other_value and #live_holders(other_value, ARGV[3]) > 0 then
      return 0
    end
  end
end
table.insert(holders, ARGV[2] .. ':' .. ARGV[7])
redis.call('HSET', KEYS[1], ARGV[1], (shared and '*' or '') .. table.concat(holders, ' '))
redis.call('HSET', KEYS[2], ARGV[4], ARGV[1])
if #nodes == 0 then
  redis.call('HDEL', KEYS[5], ARGV[1])
  redis.call('DEL', KEYS[6])
  return 1
end
table.insert(nodes, ARGV[2])
tell_shared(ARGV[1], nodes, ARGV[9], ARGV[3])
return 1 + redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
"""
)
# Give a name (ARGV[1], skeleton ARGV[3]) up at this node (ARGV[2]), under any lease: its
# entries leave the name's holders. The name is logged out once none is left (its away
# message, KEYS[3], goes with it); the nodes still holding a shared one are told. ARGV[4],
# ARGV[5]: the node and inbox prefixes; KEYS[4], KEYS[5] the device bases and the name's
# sessions (this node's entry goes).
_RELEASE = (
    LIVE
    + HAND
    + TELL_SHARED
    + """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then
  return 1
end
local kept = without_node(value, ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
if #kept == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  if redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[1] then
    redis.call('HDEL', KEYS[2], ARGV[3])
  end
  return 1
end
local rest = holders_value(value, kept)
if rest ~= value then
  redis.call('HSET', KEYS[1], ARGV[1], rest)
  tell_shared(ARGV[1], (live_holders(rest, ARGV[4])), ARGV[5], ARGV[4])
end
return 0
"""
)
# Hand a batch of messages to the nodes of their recipients: one hand() per node, carrying
# every message for it (a shared name's message goes to each node holding it). KEYS[1] the
# users, KEYS[2] this batch's marker; ARGV[1], ARGV[2] the node and inbox prefixes, ARGV[3]
# how long the marker lives (ms), ARGV[4] the sender's deadline (Unix ms), ARGV[5] the
# envelopes (see handing.envelope()), one after another: one argument, so that the client packs a
# batch at one go; ARGV[6] this node: a recipient's name beginning with a space (see
# to_devices_elsewhere()) is for the user's devices on the other nodes only.
# Answers one character per message: '1' handed over, '0' no node of it took it, '-'
# nobody of that name, 'x' too late: a batch that reaches Redis after its deadline (Redis was
# paused) publishes nothing, since its sender has answered FAILURE by then. The answer is kept
# in the marker, and a second run of the same batch (a retry after a lost reply) returns it
# without publishing anything again.
_SEND_BATCH = (
    LIVE
    + HAND
    + """
local done = redis.call('GET', KEYS[2])
if done then
  return done
end
-- The envelopes, one string: each a name field (the recipient) and its frame, whose header
-- is a type byte and a 4-byte big-endian length.
local blob = ARGV[5]
local starts, names, ends = {}, {}, {}
local count, at = 0, 1
while at <= #blob do
  local name_length = string.byte(blob, at)
  local frame_at = at + 1 + name_length
  local b1, b2, b3, b4 = string.byte(blob, frame_at + 1, frame_at + 4)
  local finish = frame_at + 4 + ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  count = count + 1
  starts[count], names[count], ends[count] = at, string.sub(blob, at + 1, frame_at - 1), finish
  at = finish + 1
end
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[4]) then
  local late = string.rep('x', count)
  redis.call('SET', KEYS[2], late, 'PX', ARGV[3])
  return late
end
local live_of, groups, order, targets = {}, {}, {}, {}
for i = 1, count do
  local name, except = names[i], nil
  if string.sub(name, 1, 1) == ' ' then
    name, except = string.sub(name, 2), ARGV[6]
  end
  local value = redis.call('HGET', KEYS[1], name)
  if value then
    if live_of[value] == nil then
      live_of[value] = (live_holders(value, ARGV[1]))
    end
    targets[i] = {}
    for _, node in ipairs(live_of[value]) do
      if node ~= except then
        if not groups[node] then
          groups[node] = {}
          table.insert(order, node)
        end
        table.insert(groups[node], string.sub(blob, starts[i], ends[i]))
        table.insert(targets[i], node)
      end
    end
  end
end
local received = {}
for _, node in ipairs(order) do
  received[node] = hand(ARGV[2] .. node, table.concat(groups[node]))
end
local answers = {}
for i = 1, count do
  local answer = '-'
  for _, node in ipairs(targets[i] or {}) do
    if received[node] > 0 then
      answer = '1'
      break
    end
    answer = '0'
  end
  answers[i] = answer
end
local answer = table.concat(answers)
redis.call('SET', KEYS[2], answer, 'PX', ARGV[3])
return answer
"""
)
# The sessions listed by the live nodes holding a name (ARGV[2]) but this one (ARGV[3]): KEYS
# the users and the name's sessions, ARGV[1] the node prefix.
_SESSIONS = (
    LIVE
    + """
local value = redis.call('HGET', KEYS[1], ARGV[2])
local listings = {}
if value then
  for _, node in ipairs((live_holders(value, ARGV[1]))) do
    local listing = node ~= ARGV[3] and redis.call('HGET', KEYS[2], node)
    if listing then
      table.insert(listings, listing)
    end
  end
end
return listings
"""
)
# Everyone logged in under a live lease; the other entries are removed on the way.
_LIVE_NAMES = (
    LIVE
    + """
local entries = redis.call('HGETALL', KEYS[1])
local alive = {}
local names = {}
for i = 1, #entries, 2 do
  local value = entries[i + 1]
  if alive[value] == nil then
    alive[value] = #live_holders(value, ARGV[1]) > 0
  end
  if alive[value] then
    table.insert(names, entries[i])
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
return names
"""
)
# Forget every name this node (ARGV[1], heartbeat key ARGV[2]) holds, and its inbox's stream
# (ARGV[3]): it is shutting down. (The other nodes holding a shared one learn it from its
# lapsed entry, as from a crash.)
_RELEASE_ALL = (
    LIVE
    + """
local mine = ARGV[1] .. ':'
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local value = entries[i + 1]
  if string.find(value, mine, 1, true) then
    local kept = without_node(value, ARGV[1])
    if #kept == 0 then
      redis.call('HDEL', KEYS[1], entries[i])
    else
      redis.call('HSET', KEYS[1], entries[i], holders_value(value, kept))
    end
  end
end
redis.call('DEL', ARGV[2], ARGV[3])
return 1
"""
)
# An inbox's stream (KEYS[1]) goes once its node's heartbeat key (KEYS[2]) has: a node that
# crashed leaves it behind, and node ids are never used again.
_FORGET_INBOX = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Scripts:
    """The directory's scripts on one Redis client, each a method with named arguments."""

    def __init__(self, client):
        self._client = client
        self._beat = client.register_script(_BEAT)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._send_batch = client.register_script(_SEND_BATCH)
        self._live_names = client.register_script(_LIVE_NAMES)
        self._sessions = client.register_script(_SESSIONS)
        self._release_all = client.register_script(_RELEASE_ALL)
        self._forget_inbox = client.register_script(_FORGET_INBOX)

    def beat(
        self, node_id: str, new_epoch: str, recovery_ms: int, ttl_seconds: int, lease: bytes, new_lease: str
    ) -> tuple[bytes, bytes, int]:
        """Refresh the node's lease (or take new_lease, if lease has lapsed); (the current
        epoch, the lease held now, the ms its recovery has left: while the nodes register their
        users again, no new name is taken)."""
        keys = [EPOCH, RECOVERING, NODE + node_id]
        epoch, held, recovering = self._beat(keys=keys, args=[new_epoch, recovery_ms, ttl_seconds, new_lease, lease])
        return epoch, held, max(0, recovering)

    def claim(
        self, name: str, skeleton: str, node_id: str, lease: bytes, epoch: bytes, again: bool, shared: bool
    ) -> int:
        """1 taken, 1 + a base: taken and shared with other nodes, 0 in use, -1 not now, -2
        lease lapsed (see _CLAIM)."""
        keys = [USERS, LOOK_ALIKES, EPOCH, RECOVERING, DEVICE_BASES, SESSIONS + name]
        flags = ["1" if again else "0", lease, "1" if shared else "0", INBOX]
        return self._claim(keys=keys, args=[name, node_id, NODE, skeleton, epoch, *flags])

    def holder(self, name: str, skeleton: str) -> bytes | None:
        """The name held that name clashes with: itself, or the one with its skeleton."""
        if self._client.hexists(USERS, name):
            return name.encode()
        return self._client.hget(LOOK_ALIKES, skeleton)

    def release(self, name: str, skeleton: str, node_id: str) -> None:
        keys = [USERS, LOOK_ALIKES, AWAY, DEVICE_BASES, SESSIONS + name]
        self._release(keys=keys, args=[name, node_id, skeleton, NODE, INBOX])

    def sessions(self, name: str, node_id: str) -> list[bytes]:
        """The SESSION-LIST frames the other live nodes holding name keep for it."""
        return self._sessions(keys=[USERS, SESSIONS + name], args=[NODE, name, node_id])

    def send_batch(
        self, marker: str, marker_ms: int, deadline_ms: int, envelopes: bytes, node_id: str, connection
    ) -> bytes:
        """One answer character per envelope (see _SEND_BATCH), run on ``connection``."""
        args = [NODE, INBOX, marker_ms, deadline_ms, envelopes, node_id]
        return run_script(connection, self._send_batch, [USERS, marker], args)

    def live_names(self) -> list[bytes]:
        return self._live_names(keys=[USERS], args=[NODE])

    def release_all(self, node_id: str) -> None:
        self._release_all(keys=[USERS], args=[node_id, NODE + node_id, INBOX + node_id])

    def forget_gone_inboxes(self) -> int:
        """Delete the inboxes' streams of the nodes that are gone; how many."""
        forgotten = 0
        for key in self._client.scan_iter(match=INBOX + "*", count=1000, _type="stream"):
            node_id = key[len(INBOX) :].decode()
            forgotten += self._forget_inbox(keys=[key, NODE + node_id])
        return forgotten
