"""What the directory's scripts share: the Lua that reads a name's holders in the users hash
and the Lua that hands a payload to a node's inbox, the envelope a message crosses between
nodes in, and the notice that tells a node how many hold a shared name."""

from collections.abc import Iterator

from ....codec import frame_end, name_field

# A name's value in the users hash: its holders, "NODE:LEASE" each (the node it is logged in
# at and that node's lease), separated by spaces. Only a registered user's name logged in by
# clients that take several devices (protocol version 4) may have several: such a value
# begins with '*' (*shared*), and a device logging in at another node joins it.
#
# live(): the node of one holder if its lease is the node's current one, else nil.
# live_holders(): the live holders of a value, as two lists: their nodes and their entries.
# without_node(): a value's entries but a node's; holders_value(): entries as a value (shared
# if the old value was).
# Every script that reads the users hash starts with them.
LIVE = """
local function live(holder, node_prefix)
  local node, lease = string.match(holder, '^([^:]*):(.*)$')
  if node and redis.call('GET', node_prefix .. node) == lease then
    return node
  end
  return nil
end
local function without_node(value, node)
  local mine, kept = node .. ':', {}
  for entry in string.gmatch(value, '[^ *]+') do
    if string.sub(entry, 1, #mine) ~= mine then
      table.insert(kept, entry)
    end
  end
  return kept
end
local function holders_value(value, kept)
  return (string.sub(value, 1, 1) == '*' and '*' or '') .. table.concat(kept, ' ')
end
local function live_holders(value, node_prefix)
  local nodes, entries = {}, {}
  for entry in string.gmatch(value, '[^ *]+') do
    local node = live(entry, node_prefix)
    if node then
      table.insert(nodes, node)
      table.insert(entries, entry)
    end
  end
  return nodes, entries
end
"""
KEPT_BATCHES = 10_000  # the batches an inbox's stream keeps, newest (see HAND)

# Hand a payload to a node's inbox, whose name is both a key and a channel: the payload is
# added to the inbox's stream (its newest KEPT_BATCHES kept), then published on its channel
# after its entry id (a length byte, then the id), so that a node whose subscription ended
# (Redis restarted with the batch still in its output buffer) reads what it lost from the
# stream (see inbox.py). Answers how many subscribers took it.
# A payload nobody took is not kept: its sender hears FAILURE for it (a direct message is then
# kept for the recipient's next login instead). What has no sender to tell (a room's messages
# and events, a notice) is handed with its node's heartbeat key: it stays for a node that is
# alive yet not subscribed at the moment (its subscription is being made again), which reads
# it once it is.
HAND = f"""
local function hand(inbox, payload, heartbeat)
  local entry = redis.call('XADD', inbox, 'MAXLEN', '~', {KEPT_BATCHES}, '*', 'b', payload)
  local received = redis.call('SPUBLISH', inbox, string.char(#entry) .. entry .. payload)
  if received == 0 and not (heartbeat and redis.call('EXISTS', heartbeat) == 1) then
    redis.call('XDEL', inbox, entry)
  end
  return received
end
"""
SHARED = 0xFE  # a notice between nodes: how many nodes hold a shared name now (see TELL_SHARED)

# Tell the nodes (a list) how many hold a shared name now: an envelope to nobody (an empty
# name field) carrying a SHARED frame (the name's field, then the count), so that each knows
# whether the user's messages must go through Redis to reach all their devices.
TELL_SHARED = f"""
local function tell_shared(name, nodes, inbox_prefix, node_prefix)
  local body = string.char(#name) .. name .. string.char(math.min(#nodes, 255))
  local envelope = string.char(0) .. string.char({SHARED}) .. struct.pack('>I4', #body) .. body
  for _, node in ipairs(nodes) do
    hand(inbox_prefix .. node, envelope, node_prefix .. node)
  end
end
"""


def envelope(recipient: str, frame: bytes) -> bytes:
    """A message as it crosses to another node: the recipient's name field, then its frame
    (the batch script reads the same layout)."""
    return name_field(recipient) + frame


def to_devices_elsewhere(name: str) -> str:
    """The recipient that reaches name's devices on the other nodes only (what one device
    did, for the others): no name has whitespace."""
    return " " + name


def open_envelopes(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(recipient, frame) for each envelope in a batch another node published."""
    offset = 0
    while offset < len(data):
        name_end = offset + 1 + data[offset]
        end = frame_end(data, name_end)
        assert end is not None, "a batch holds whole envelopes"
        yield data[offset + 1 : name_end].decode(), data[name_end:end]
        offset = end
