"""The Lua of a cluster's rooms (see shared.py for the keys they read and write): messages
posted and published, an event told to the nodes with members, a join, a leave. Each runs
in one step on the directory's Redis, so that a room's ids, and what its members are handed,
come in one order.
"""

from ..presence.cluster.handing import HAND

# nodes_of(users, members): the nodes with a member of the room logged in (at any of their
# holders: see the directory's scripts), as a set, and how many. Their holders are read many
# at a time, and a value shared by many members (one node, one lease) is parsed once.
NODES = """
local function nodes_of(users, members_key)
  local nodes, count, seen = {}, 0, {}
  local members = redis.call('ZRANGE', members_key, 0, -1)
  for first = 1, #members, 1000 do
    local values = redis.call('HMGET', users, unpack(members, first, math.min(first + 999, #members)))
    for _, value in ipairs(values) do
      if value and not seen[value] then
        seen[value] = true
        for node in string.gmatch(value, '([^ *:]+):') do
          if not nodes[node] then
            nodes[node] = true
            count = count + 1
          end
        end
      end
    end
  end
  return nodes, count
end
"""
# Publish an envelope (ARGV[3]) to the inbox of every node with members: KEYS[1] the users,
# KEYS[2] the room's members; ARGV[1], ARGV[2] the node and inbox prefixes. Returns how many
# nodes.
TELL = (
    NODES
    + HAND
    + """
local nodes, count = nodes_of(KEYS[1], KEYS[2])
for node in pairs(nodes) do
  hand(ARGV[2] .. node, ARGV[3], ARGV[1] .. node)
end
return count
"""
)
# Messages from members, many at once (see posting.Poster): KEYS[1] the users, ARGV[1] and
# ARGV[2] the node and inbox prefixes; then per message, KEYS its room's members and hash,
# ARGV its room, sender, time (ms) and text. Each takes its room's next id and becomes a
# ROOM-MESSAGE frame built here around it; every node with members of any of the rooms is
# handed its messages, in order, in one payload. Returns the ids, 0 for a message not posted (its sender is not a
# member, or the room is gone: the rules then say why).
POST = (
    NODES
    + HAND
    + """
local function u64(n)
  return struct.pack('>I4I4', math.floor(n / 4294967296), n % 4294967296)
end
local ids, payloads, order, nodes_by_room = {}, {}, {}, {}
for i = 1, (#KEYS - 1) / 2 do
  local members_key, room_key = KEYS[2 * i], KEYS[2 * i + 1]
  local room, sender, time, text = ARGV[4 * i - 1], ARGV[4 * i], tonumber(ARGV[4 * i + 1]), ARGV[4 * i + 2]
  if redis.call('ZSCORE', members_key, sender) then
    local nodes = nodes_by_room[members_key]
    if not nodes then
      nodes = nodes_of(KEYS[1], members_key)
      nodes_by_room[members_key] = nodes
    end
    local id = redis.call('HINCRBY', room_key, 'last', 1)
    local body = string.char(#room) .. room .. string.char(#sender) .. sender .. u64(id) .. u64(time) .. text
    local envelope = string.char(#room) .. room .. string.char(0x89) .. struct.pack('>I4', #body) .. body
    for node in pairs(nodes) do
      if not payloads[node] then
        payloads[node] = {}
        table.insert(order, node)
      end
      table.insert(payloads[node], envelope)
    end
    ids[i] = id
  else
    ids[i] = 0
  end
end
for _, node in ipairs(order) do
  hand(ARGV[2] .. node, table.concat(payloads[node]), ARGV[1] .. node)
end
return ids
"""
)


# Join (and make, if it is not there): KEYS the room's hash, members, registered members,
# the rooms, the look-alike keys, the user's rooms; ARGV the user, the room, its look-alike key,
# the owner of a new room ('' for none), '1' if the user is registered, the time (ms). Answers
# '' once joined, or the room a new one would look like (one that is still there: a key left
# by a room whose key was made another way before is taken over). A room's 'last' id outlives
# it: ids never go back under one name.
JOIN = """
if redis.call('HEXISTS', KEYS[1], 'topic') == 0 then
  local other = redis.call('HGET', KEYS[5], ARGV[3])
  if other and other ~= ARGV[2] and redis.call('SISMEMBER', KEYS[4], other) == 1 then
    return other
  end
  redis.call('HSET', KEYS[1], 'owner', ARGV[4], 'topic', '', 'invite_only', '0')
  redis.call('SADD', KEYS[4], ARGV[2])
  redis.call('HSET', KEYS[5], ARGV[3], ARGV[2])
end
redis.call('ZADD', KEYS[2], 'NX', ARGV[6], ARGV[1])
if ARGV[5] == '1' then
  redis.call('SADD', KEYS[3], ARGV[1])
end
redis.call('SADD', KEYS[6], ARGV[2])
return ''
"""
# Leave (same KEYS, and the invitations 7th; ARGV the user, the room, its look-alike key): the
# room goes with its last member. Answers the members left.
LEAVE = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[2])
local left = redis.call('ZCARD', KEYS[2])
if left == 0 then
  redis.call('HDEL', KEYS[1], 'owner', 'topic', 'invite_only')
  redis.call('DEL', KEYS[3], KEYS[7])
  redis.call('SREM', KEYS[4], ARGV[2])
  if redis.call('HGET', KEYS[5], ARGV[3]) == ARGV[2] then
    redis.call('HDEL', KEYS[5], ARGV[3])
  end
end
return left
"""

# A member's name registered meanwhile: a registered member from now on, of a room it is still
# in, and its owner if it has none (KEYS: the room's members, its registered, the room; ARGV:
# the user). Also a registered member's claim of a room without an owner (ARGV[2] '1': only
# that). Answers 1 where the user owns it now.
REGISTERED = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
if ARGV[2] ~= '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
end
if redis.call('HGET', KEYS[3], 'owner') == '' then
  redis.call('HSET', KEYS[3], 'owner', ARGV[1])
  return 1
end
return 0
"""
