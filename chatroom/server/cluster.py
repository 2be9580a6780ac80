"""Presence and routing shared through Redis, so that several servers act as one chat.

Each server is a *node* with a random id. In Redis (one server, or the master of one slot
of a Redis Cluster: every key below carries the hash tag ``{chatroom}``):

- ``{chatroom}:users`` is a hash from username to the id of the node the user is logged in
  at; a Lua script claims a name atomically, so two nodes can never both take it;
- ``{chatroom}:node:ID`` is the node's heartbeat, a key that expires TTL seconds after the
  node last refreshed it: the users of a node without one are treated as logged out (and
  swept);
- ``{chatroom}:inbox:ID`` is the node's sharded pub/sub channel. A message for a user on
  another node is published there; SPUBLISH answers how many subscribers got it, so the
  sender hears OK only once the message was handed to that node.

Users on the same node are found in the node's own LocalDirectory: their messages never touch
Redis. When Redis cannot be reached, what needs it fails (DirectoryUnavailable, so FAILURE)
and the node logs that once; it recovers by itself, re-registering its users if Redis lost
them.
"""

import logging
import time
import uuid

import gevent
import redis
from gevent.event import AsyncResult
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..codec import name_field
from ..protocol import HEADER_SIZE
from .directory import DirectoryUnavailable, LocalDirectory
from .metrics import COUNTS
from .redis_link import pooled_client, slot_owner
from .skeleton import skeleton

log = logging.getLogger(__name__)

# Every key and channel of the directory shares the hash tag {chatroom}: one slot, so that
# a claim or a batch is one atomic script in a Redis Cluster too (see redis_link).
USERS = "{chatroom}:users"
LOOK_ALIKES = "{chatroom}:skeletons"
EPOCH = "{chatroom}:epoch"
RECOVERING = "{chatroom}:recovering"
NODE = "{chatroom}:node:"
INBOX = "{chatroom}:inbox:"
BATCH = "{chatroom}:batch:"
MARKER_MS = 60_000  # how long a batch's answers are kept, for a sender that lost the reply
SEND_TIMEOUT = 1.0  # how long a batch of messages waits for Redis's answer
SEND_DEADLINE = 1.5  # a batch not run by Redis this long after it was sent never publishes
SETTLE_TIMEOUT = 1.0  # past the deadline, how long a sender may wait to learn what became of it
CIRCUIT_PAUSE = 1.0  # after a failure, requests fail at once for this long, then one tries
RETRY_PAUSE = 0.5
POOL_SIZE = 32

# Redis may lose its data (a restart without persistence): then every node must register its
# users again before anyone may take a name, or a name could be held twice. An *epoch* key,
# made by the first node that finds it missing, marks the data a node registered its users
# in; while ``recovering`` lasts (HALF a TTL, more than the heartbeat period in which every
# live node notices the new epoch), only re-registrations may claim names.
#
# The heartbeat: KEYS epoch, recovering, this node's key; ARGV a new epoch, the recovery in
# ms, the TTL in s. Answers {epoch, 1 if this call began it}.
_BEAT = """
local epoch = redis.call('GET', KEYS[1])
local began = 0
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  began = 1
end
redis.call('SET', KEYS[3], '1', 'EX', ARGV[3])
return {epoch, began}
"""
# Take a name (ARGV[1], skeleton ARGV[4]) unless a live node (another one) holds it, or holds
# another name with the same skeleton. A skeleton entry whose name is no longer held by a live
# node is stale and taken over. KEYS[3], KEYS[4], ARGV[5], ARGV[6]: the epoch, the recovery,
# the epoch this node registered its users in, and '1' for a re-registration. Answers 1 (taken),
# 0 (in use) or -1 (not now: Redis lost its data and the nodes are registering again).
_CLAIM = """
local epoch = redis.call('GET', KEYS[3])
if epoch ~= ARGV[5] then
  return -1
end
if ARGV[6] ~= '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  return -1
end
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] and redis.call('EXISTS', ARGV[3] .. holder) == 1 then
  return 0
end
local other = redis.call('HGET', KEYS[2], ARGV[4])
if other and other ~= ARGV[1] then
  local other_holder = redis.call('HGET', KEYS[1], other)
  if other_holder and redis.call('EXISTS', ARGV[3] .. other_holder) == 1 then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[1])
return 1
"""
# Give a name (ARGV[1], skeleton ARGV[3]) up, if this node still holds it.
_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[1] then
    redis.call('HDEL', KEYS[2], ARGV[3])
  end
end
return 1
"""
# Hand a batch of messages to the nodes of their recipients: one SPUBLISH per node, carrying
# every message for it. KEYS[1] the users, KEYS[2] this batch's marker; ARGV[1], ARGV[2] the
# node and inbox prefixes, ARGV[3] how long the marker lives (ms), ARGV[4] the sender's
# deadline (Unix ms), ARGV[5] the messages, one after another, each a name field (the
# recipient) and its frame: one argument, so that the client packs a batch at one go.
# Answers one character per message: '1' handed over, '0' its node did not take it, '-'
# nobody of that name, 'x' too late: a batch that reaches Redis after its deadline (Redis was
# paused) publishes nothing, since its sender has answered FAILURE by then. The answer is kept
# in the marker, and a second run of the same batch (a retry after a lost reply) returns it
# without publishing anything again.
_SEND_BATCH = """
local done = redis.call('GET', KEYS[2])
if done then
  return done
end
-- The messages, one string: each a name field (the recipient) and its frame.
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
local alive, groups, order, holders = {}, {}, {}, {}
for i = 1, count do
  local holder = redis.call('HGET', KEYS[1], names[i])
  if holder then
    if alive[holder] == nil then
      alive[holder] = redis.call('EXISTS', ARGV[1] .. holder) == 1
    end
    if alive[holder] then
      if not groups[holder] then
        groups[holder] = {}
        table.insert(order, holder)
      end
      table.insert(groups[holder], string.sub(blob, starts[i], ends[i]))
      holders[i] = holder
    end
  end
end
local received = {}
for _, node in ipairs(order) do
  received[node] = redis.call('SPUBLISH', ARGV[2] .. node, table.concat(groups[node]))
end
local answers = {}
for i = 1, count do
  local holder = holders[i]
  if not holder then
    answers[i] = '-'
  elseif received[holder] > 0 then
    answers[i] = '1'
  else
    answers[i] = '0'
  end
end
local answer = table.concat(answers)
redis.call('SET', KEYS[2], answer, 'PX', ARGV[3])
return answer
"""
# Everyone logged in at a live node; the entries of dead nodes are removed on the way.
_LIVE_NAMES = """
local entries = redis.call('HGETALL', KEYS[1])
local alive = {}
local names = {}
for i = 1, #entries, 2 do
  local node = entries[i + 1]
  if alive[node] == nil then
    alive[node] = redis.call('EXISTS', ARGV[1] .. node) == 1
  end
  if alive[node] then
    table.insert(names, entries[i])
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
return names
"""
# Forget every name this node holds (it is shutting down).
_RELEASE_ALL = """
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  if entries[i + 1] == ARGV[1] then
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
redis.call('DEL', ARGV[2])
return 1
"""


class RedisDirectory:
    """A Directory shared by every node connected to one Redis."""

    def __init__(self, url: str, ttl: float = 10.0):
        self.node_id = uuid.uuid4().hex[:12]
        self.ttl = ttl
        self._known = [url]  # where to ask for the directory: any node of a Redis Cluster will do
        self._address = ""  # the Redis server holding the directory's slot
        self._following: gevent.Greenlet | None = None
        self._connect(url)
        self._local = LocalDirectory()
        self._epoch = b""  # the epoch this node's users are registered in
        self._recovery_ms = max(1, round(ttl * 500))  # half a TTL
        self._unreleased: set[str] = set()  # names whose release Redis did not hear of yet
        self._healthy = True
        self._greenlets: list[gevent.Greenlet] = []
        self._inbox: gevent.Greenlet | None = None
        self._outgoing: list = []  # (payload, AsyncResult) waiting for the next batch
        self._batches = 0
        self._failed_at = 0.0  # when Redis last failed (the circuit is open for CIRCUIT_PAUSE)
        self._courier = None  # the greenlet carrying batches to Redis, while there are any

    def _connect(self, address: str) -> None:
        """Talk to the Redis server at address from now on."""
        self._address = address
        self._redis = pooled_client(address, POOL_SIZE)
        # Batches of messages wait at most SEND_TIMEOUT for Redis, and are not retried (a
        # lost reply is settled through the batch's marker instead).
        self._sender = redis.Redis.from_url(
            address, socket_connect_timeout=SEND_TIMEOUT, socket_timeout=SEND_TIMEOUT, retry=Retry(NoBackoff(), 0)
        )
        self._scripts = {
            name: self._redis.register_script(source)
            for name, source in [
                ("beat", _BEAT),
                ("claim", _CLAIM),
                ("release", _RELEASE),
                ("send", _SEND_BATCH),
                ("names", _LIVE_NAMES),
                ("release_all", _RELEASE_ALL),
            ]
        }

    def _follow_directory_slot(self) -> None:
        """Find the server that holds the directory now (a Redis Cluster may have moved its
        slot, or failed its master over to a replica), and move to it if it changed."""
        try:
            address, nodes = slot_owner(self._known, USERS)
        except redis.RedisError:
            return  # unreachable: the next attempt asks again
        self._known = list(dict.fromkeys([*self._known, *nodes]))
        if address != self._address:
            inbox = self._inbox  # None at the start, when nothing moved
            log.log(logging.INFO if inbox is None else logging.WARNING, "the directory's slot is served by %s", address)
            # The old clients are dropped, not closed: another greenlet may be reading from
            # one, and closing its socket under it would break that greenlet, not raise.
            self._connect(address)
            if inbox is not None:
                # SPUBLISH counts only the subscribers of the server it runs on: the inbox
                # must move too (a demoted master may go on relaying to its old subscribers).
                if inbox is not gevent.getcurrent():
                    inbox.kill(_DirectoryMoved, block=False)
                # A replica may lack the last claims its master made (replication is
                # asynchronous): register this node's users again, now.
                self._epoch = b""
                gevent.spawn(self._beat)

    def start(self) -> None:
        self._local.start()
        self._follow_directory_slot()
        if self._beat() == "began":
            # A new epoch: a moment for other nodes, if Redis lost what they had, to register
            # their users again before this node takes names.
            gevent.sleep(self._recovery_ms / 1000)
        self._inbox = gevent.spawn(self._inbox_loop)
        self._greenlets = [gevent.spawn(self._heartbeat_loop), self._inbox]
        log.info("cluster node %s, heartbeat TTL %g s", self.node_id, self.ttl)

    def stop(self) -> None:
        gevent.killall(self._greenlets)
        try:
            self._scripts["release_all"](keys=[USERS], args=[self.node_id, NODE + self.node_id])
        except redis.RedisError:
            pass  # the heartbeat expires on its own
        self._redis.close()
        self._sender.close()

    # --- Directory ----------------------------------------------------------------------

    def claim(self, name, mailbox):
        if self._local.find(name) is not None:
            return False
        taken = self._claim(name, again=False)
        if taken == -1:
            gevent.spawn(self._beat)  # this node may not know of a new epoch yet: catch up now
        if taken != 1:
            return False
        self._unreleased.discard(name)
        return self._local.claim(name, mailbox)

    def _claim(self, name: str, again: bool) -> int:
        keys = [USERS, LOOK_ALIKES, EPOCH, RECOVERING]
        args = [name, self.node_id, NODE, skeleton(name), self._epoch, "1" if again else "0"]
        return self._call("claim", keys=keys, args=args)

    def release(self, name, mailbox):
        self._local.release(name, mailbox)
        if self._local.find(name) is None:
            self._unreleased.add(name)
            self._call("release", keys=[USERS, LOOK_ALIKES], args=[name, self.node_id, skeleton(name)])
            self._unreleased.discard(name)

    def names(self):
        return sorted(n.decode() for n in self._call("names", keys=[USERS], args=[NODE]))

    def find(self, name):
        mailbox = self._local.find(name)
        if mailbox is not None:
            return mailbox
        # Whether a user elsewhere exists is learnt in the same round trip that hands them
        # the message (see _RemoteMailbox).
        return _RemoteMailbox(self, name)

    # --- Between nodes ------------------------------------------------------------------

    def send_later(self, recipient: str, frame: bytes) -> AsyncResult:
        """Queue a frame for the node of recipient, without waiting: the AsyncResult becomes
        True once that node has it (False if nobody has it; an exception if Redis failed).
        A session queues every message of a batch of frames this way before it waits, so
        that they all go in one round trip."""
        answer = AsyncResult()
        self._outgoing.append((name_field(recipient) + frame, answer))
        if self._courier is None:
            self._courier = gevent.spawn(self._carry)
        return answer

    def _carry(self):
        try:
            while self._outgoing:
                self._carry_batch()
        finally:
            self._courier = None

    def _carry_batch(self):
        """Carry what is queued to Redis, in one round trip, and set each message's answer."""
        batch, self._outgoing = self._outgoing, []
        if self._circuit_open():  # fail at once: Redis failed a moment ago
            for _, answer in batch:
                answer.set_exception(redis.ConnectionError("Redis is known to be unreachable"))
            return
        self._batches += 1
        marker = f"{BATCH}{self.node_id}:{self._batches}"
        deadline = time.time() + SEND_DEADLINE
        messages = b"".join([payload for payload, _ in batch])
        args: list[bytes | str | int] = [NODE, INBOX, MARKER_MS, int(deadline * 1000), messages]
        started = time.perf_counter()
        try:
            answers = self._scripts["send"](keys=[USERS, marker], args=args, client=self._sender)
        except redis.RedisError as err:
            self._unreachable(err)
            # MOVED: the batch was refused, not run; otherwise it may have run after all.
            answers = None if isinstance(err, redis.exceptions.MovedError) else self._settle(marker, deadline)
            if answers is None:
                for _, answer in batch:
                    answer.set_exception(err)
                return
        else:
            COUNTS.redis_round_trip.observe(time.perf_counter() - started)
            self._reachable()
        COUNTS.cross_node += answers.count(b"1")
        for (_, answer), handed in zip(batch, answers.decode(), strict=True):
            answer.set(handed == "1")

    def _settle(self, marker: str, deadline: float) -> bytes | None:
        """After a batch failed: its answers if it ran after all (the reply may be what was
        lost), else None once it is sure not to run (past its deadline it publishes nothing),
        or once Redis stayed away SETTLE_TIMEOUT past the deadline (then nobody can tell)."""
        while time.time() < deadline + SETTLE_TIMEOUT:
            try:
                answers = self._sender.get(marker)
            except redis.RedisError as err:
                self._unreachable(err)  # keeps the circuit open meanwhile
                gevent.sleep(RETRY_PAUSE / 5)
                continue
            if answers is not None:
                return answers.encode() if isinstance(answers, str) else answers
            if time.time() > deadline:
                return None
            gevent.sleep(RETRY_PAUSE / 5)
        log.warning("Redis went away with a batch of cross-node messages: answered FAILURE, delivery unknown")
        return None

    def _inbox_loop(self):
        while True:
            try:
                self._listen_to_inbox()
                gevent.sleep(RETRY_PAUSE)
                self._follow_directory_slot()
            except _DirectoryMoved:
                pass  # subscribe again at once, where the directory is now

    def _listen_to_inbox(self):
        """Take the batches other nodes publish to this one, until the subscription ends."""
        # The inbox waits for messages as long as it takes: no read timeout, but keepalive.
        subscriber = redis.Redis.from_url(self._address, socket_connect_timeout=1.0, socket_keepalive=True)
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.ssubscribe(INBOX + self.node_id)
            if not self._healthy:
                gevent.spawn(self._beat)  # Redis is back: register again now, not at the next beat
            # listen() ends if Redis Cluster moves the channel's slot elsewhere (it
            # unsubscribes us): then the loop finds where it went and subscribes there.
            for message in pubsub.listen():
                if message["type"] == "smessage":
                    self._deliver_from_inbox(message["data"])
        except redis.RedisError as err:
            self._unreachable(err)
        finally:
            pubsub.close()
            subscriber.close()

    def _deliver_from_inbox(self, data: bytes):
        """Hand out a batch from another node: (name field, frame) after (name field, frame)."""
        offset = 0
        while offset < len(data):
            name_end = offset + 1 + data[offset]
            frame_end = name_end + HEADER_SIZE + int.from_bytes(data[name_end + 1 : name_end + HEADER_SIZE], "big")
            mailbox = self._local.find(data[offset + 1 : name_end].decode())
            # Never wait for room here: one slow recipient must not hold up the whole inbox.
            if mailbox is not None:  # else logged out meanwhile
                mailbox.deliver(data[name_end:frame_end], wait=False)
            offset = frame_end

    def _heartbeat_loop(self):
        while True:
            gevent.sleep(self.ttl / 3)
            self._beat()

    def _beat(self) -> str | None:
        """Refresh this node's heartbeat; register its users again in a new epoch (Redis lost
        what it had). "began" when this call began the epoch."""
        try:
            epoch, began = self._scripts["beat"](
                keys=[EPOCH, RECOVERING, NODE + self.node_id],
                args=[uuid.uuid4().hex, self._recovery_ms, max(1, round(self.ttl))],
            )
            self._reachable()
            if epoch != self._epoch:
                if self._epoch:
                    log.warning("Redis lost its data: registering this node's %d users again", len(self._local.names()))
                self._epoch = epoch
                self._register_local_users()
            for name in list(self._unreleased):
                self._scripts["release"](keys=[USERS, LOOK_ALIKES], args=[name, self.node_id, skeleton(name)])
                self._unreleased.discard(name)
        except (redis.RedisError, DirectoryUnavailable) as err:
            self._unreachable(err)
            return None
        return "began" if began else None

    def _register_local_users(self):
        for name in self._local.names():
            if self._claim(name, again=True) != 1:
                log.warning("%s was taken on another node while Redis was away; logging out here", name)
                mailbox = self._local.find(name)
                if mailbox is not None:
                    mailbox.disconnect()

    # --- Health -------------------------------------------------------------------------

    def _call(self, script, keys, args):
        if self._circuit_open():
            raise DirectoryUnavailable()  # at once: Redis failed a moment ago
        started = time.perf_counter()
        try:
            result = self._scripts[script](keys=keys, args=args)
        except redis.RedisError as err:
            if not _busy(err):
                self._unreachable(err)
            raise DirectoryUnavailable() from err
        COUNTS.redis_round_trip.observe(time.perf_counter() - started)
        self._reachable()
        return result

    def healthy(self) -> bool:
        return self._healthy

    def _circuit_open(self) -> bool:
        """Whether requests should fail without trying: Redis failed less than CIRCUIT_PAUSE
        ago. After the pause one request tries; its failure opens the circuit again."""
        return not self._healthy and time.monotonic() - self._failed_at < CIRCUIT_PAUSE

    def _unreachable(self, err):
        if isinstance(err, redis.exceptions.MovedError):
            # Not a failure of Redis: a Redis Cluster serves the directory's slot elsewhere
            # now (a failover, a resharding). Go there at once.
            if self._following is None or self._following.dead:
                self._following = gevent.spawn(self._follow_directory_slot)
            return
        self._failed_at = time.monotonic()
        COUNTS.redis_errors += 1
        if self._healthy:
            self._healthy = False
            log.warning("Redis unreachable (%s); requests that need it fail until it is back", err)

    def _reachable(self):
        if not self._healthy:
            self._healthy = True
            log.warning("Redis reachable again")


class _DirectoryMoved(Exception):
    """Raised in the inbox greenlet: subscribe again, where the directory is now."""


def _busy(err: Exception) -> bool:
    """Whether err says only that every pooled connection stayed busy (Redis is fine)."""
    return isinstance(err, redis.ConnectionError) and str(err).startswith("No connection available")


class _RemoteMailbox:
    """A user who is not on this node: messages go to the inbox of the node they are on, and
    fail if there is none."""

    __slots__ = ("_directory", "_name")

    def __init__(self, directory, name):
        self._directory = directory
        self._name = name

    def deliver(self, frame: bytes, wait: bool = True) -> bool:
        # (Sessions use deliver_later; this is the Mailbox's plain form of it.) ``wait`` does
        # not apply: the other node queues the frame without waiting for room.
        try:
            return self.deliver_later(frame).get()
        except redis.RedisError as err:
            raise DirectoryUnavailable() from err

    def deliver_later(self, frame: bytes) -> AsyncResult:
        return self._directory.send_later(self._name, frame)

    def disconnect(self) -> None:
        pass  # the user's own node ends their connection
