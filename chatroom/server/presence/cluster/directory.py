"""Presence and names shared through Redis: the Directory of a node in a cluster.

Each server is a *node* with a random id. A name is claimed for a node by a Lua script (see
:mod:`.scripts`), atomically, so two nodes can never both take it; a node's heartbeat key
expires TTL seconds after the node last refreshed it, and the users of a node without one are
treated as logged out (and swept). Users on the same node are found in the node's own
LocalDirectory: their messages never touch Redis; the others are RemoteRecipients, reached
through the :class:`~.courier.Courier` and the other node's :class:`~.inbox.Inbox`.

A registered user's devices (protocol version 4) may log in at several nodes: the name is
then *shared* by them (see scripts._CLAIM), each node is told so, and messages for the user
go through Redis to every node holding it, their own node's included, while what one device
does reaches the others through the same inboxes.

When Redis cannot be reached, what needs it fails (DirectoryUnavailable, so FAILURE) and the
node logs that once; it recovers by itself, re-registering its users if Redis lost them. On a
Redis Cluster it follows the directory's slot wherever a failover or a resharding moves it.
"""

import logging
import time
import uuid

import gevent
import redis
from gevent.lock import BoundedSemaphore
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...operations.counts import COUNTS
from ...operations.logs import fields
from ..devices import Devices
from ..directory import DirectoryUnavailable, LocalDirectory, Mailbox, RemoteRecipient
from ..redis_link import pooled_client, redis_client, slot_owner
from ..skeleton import skeleton
from ..watch import PresenceWatch
from .courier import Circuit, Courier
from .elsewhere import NUMBERS_PER_NODE, SharedDevices
from .inbox import DirectoryMoved, Inbox, forget_gone_inboxes
from .scripts import AWAY, INBOX, NODE, SESSIONS, USERS, Scripts

log = logging.getLogger(__name__)

SEND_TIMEOUT = 1.0  # how long a batch of messages waits for Redis's answer
# Pooled Redis connections (made as needed). In a storm of logins and joins a request holds
# one until its greenlet's turn at the hub comes: 1,000 joining one room kept 32 busy too long.
POOL_SIZE = 128
AWAY_FRESH = 1.0  # seconds the away list read for away_of serves
REREGISTER_PAUSE = 0.1  # before trying again to register this node's users in a new epoch


class RedisDirectory:
    """A Directory shared by every node connected to one Redis (or Redis Cluster)."""

    def __init__(self, url: str, ttl: float = 10.0):
        self.node_id = uuid.uuid4().hex[:12]
        self.ttl = ttl
        self._known = [url]  # where to ask for the directory: any node of a Redis Cluster will do
        self._address = ""  # the Redis server holding the directory's slot
        self._following: gevent.Greenlet | None = None
        self._circuit = Circuit(on_moved=self._follow_soon)
        self._courier = Courier(self.node_id, self._circuit)
        self._local = LocalDirectory()
        self.presence = PresenceWatch(self._names_if_reachable, self._away_if_reachable)
        self._inbox = Inbox(
            self.node_id,
            self._local,
            self._circuit,
            address=lambda: self._address,
            on_reconnect=self._beat,
            follow=self._follow_directory_slot,
            on_shared=self._shared_elsewhere,
        )
        self._epoch = b""  # the epoch this node's users are registered in
        self._lease = b""  # the lease they are registered under (see scripts._BEAT)
        self._beating = BoundedSemaphore()  # (see _beat)
        self._catching_up: gevent.Greenlet | None = None  # a beat after claims were refused (see claim)
        self._recovery_ms = max(1, round(ttl * 500))  # half a TTL
        self._unreleased: set[str] = set()  # names whose release Redis did not hear of yet
        self._away_seen: dict[str, str] = {}  # who was away when last read (see away_of)
        self._away_read_at = float("-inf")
        self._greenlets: list[gevent.Greenlet] = []
        self._listening: gevent.Greenlet | None = None  # the inbox's greenlet
        self._connect(url)

    def _connect(self, address: str) -> None:
        """Talk to the Redis server at address from now on."""
        self._address = address
        self._redis = pooled_client(address, POOL_SIZE)
        self._scripts = Scripts(self._redis)
        # Batches of messages wait at most SEND_TIMEOUT for Redis, and are not retried (a
        # lost reply is settled through the batch's marker instead).
        self._sender = redis_client(
            address, socket_connect_timeout=SEND_TIMEOUT, socket_timeout=SEND_TIMEOUT, retry=Retry(NoBackoff(), 0)
        )
        self._courier.use(self._scripts, self._sender)
        # The heartbeat has a connection of its own: in a storm of logins and joins every
        # pooled one may stay busy for longer than the lease lasts.
        self._heart_link = redis_client(
            address, socket_connect_timeout=1.0, socket_timeout=2.0, retry=Retry(NoBackoff(), 1)
        )
        self._heart = Scripts(self._heart_link)

    def _follow_soon(self) -> None:
        # Not a failure of Redis: a Redis Cluster serves the directory's slot elsewhere now
        # (a failover, a resharding). Go there at once.
        if self._following is None or self._following.dead:
            self._following = gevent.spawn(self._follow_directory_slot)

    def _follow_directory_slot(self) -> None:
        """Find the server that holds the directory now (a Redis Cluster may have moved its
        slot, or failed its master over to a replica), and move to it if it changed."""
        try:
            address, nodes = slot_owner(self._known, USERS)
        except redis.RedisError:
            return  # unreachable: the next attempt asks again
        self._known = list(dict.fromkeys([*self._known, *nodes]))
        if address == self._address:
            return
        inbox = self._listening  # None at the start, when nothing moved
        log.log(logging.INFO if inbox is None else logging.WARNING, "the directory's slot is served by %s", address)
        # The old clients are dropped, not closed: another greenlet may be reading from one,
        # and closing its socket under it would break that greenlet, not raise.
        self._connect(address)
        if inbox is not None:
            # SPUBLISH counts only the subscribers of the server it runs on: the inbox must
            # move too (a demoted master may go on relaying to its old subscribers).
            if inbox is not gevent.getcurrent():
                inbox.kill(DirectoryMoved, block=False)
            # A replica may lack the last claims its master made (replication is
            # asynchronous): register this node's users again, now.
            self._epoch = b""
            gevent.spawn(self._beat)

    def start(self) -> None:
        self._local.start()
        self._follow_directory_slot()
        recovering = self._beat()
        if recovering:
            # A new epoch (this node's or another's): while the nodes register their users
            # again no name is taken, so this node waits it out before serving.
            gevent.sleep(recovering / 1000)
            self._beat()  # (the lease was refreshed a moment ago: again, before serving)
        self._listening = gevent.spawn(self._inbox.run)
        self._greenlets = [gevent.spawn(self._heartbeat_loop), self._listening]
        gevent.spawn(forget_gone_inboxes, self._scripts)  # (once: a moment's work)
        log.info("cluster node %s, heartbeat TTL %g s", self.node_id, self.ttl)

    def stop(self) -> None:
        self.presence.stop()
        gevent.killall(self._greenlets)
        try:
            self._scripts.release_all(self.node_id)
        except redis.RedisError:
            pass  # the heartbeat expires on its own
        self._redis.close()
        self._sender.close()
        self._heart_link.close()

    # --- Directory ----------------------------------------------------------------------

    def claim(self, name: str, mailbox: Mailbox, shared: bool = False) -> bool:
        if self._local.find(name) is not None:
            return False
        taken = self._claim(name, again=False, shared=shared)
        if taken < 0 and (self._catching_up is None or self._catching_up.dead):
            # A new epoch, or a lapsed lease, to catch up with: one beat for all refused meanwhile.
            self._catching_up = gevent.spawn(self._beat)
        if taken < 1 or not self._local.claim(name, mailbox):
            return False
        self._unreleased.discard(name)
        if shared:
            self._share(name, mailbox, taken)
        return True

    def share(self, name: str) -> None:
        devices = self._local.find(name)
        if type(devices) is Devices and devices.elsewhere is None:
            taken = self._claim(name, again=True, shared=True)  # (as this node's own again: nobody else holds it)
            if taken > 0:
                self._share(name, devices, taken)

    def _claim(self, name: str, again: bool, shared: bool) -> int:
        return self._call(
            self._scripts.claim, name, skeleton(name), self.node_id, self._lease, self._epoch, again, shared
        )

    def _shared_elsewhere(self, name: str, nodes: int) -> None:
        """(Told by the inbox.) ``nodes`` nodes hold name now: while that is more than this
        one, its messages go through Redis and its devices reach the others."""
        devices = self._local.find(name)
        if type(devices) is Devices and devices.elsewhere is not None:
            devices.elsewhere.others = nodes > 1

    def _share(self, name: str, devices: Mailbox, taken: int) -> None:
        """A shared claim of name was answered ``taken``: the devices here list themselves for
        the other nodes, and, if the name is held elsewhere too (> 1), number themselves apart
        and reach the others."""
        if type(devices) is not Devices:
            return
        if devices.elsewhere is None:
            devices.elsewhere = SharedDevices(name, self)
            if taken > 1:
                devices.number_from((taken - 1) * NUMBERS_PER_NODE)
        devices.elsewhere.others = taken > 1
        devices.elsewhere.changed(devices)

    def holder(self, name: str) -> str | None:
        held = self._local.holder(name) or self._call(self._scripts.holder, name, skeleton(name))
        return held.decode() if isinstance(held, bytes) else held

    def release(self, name: str, mailbox: Mailbox) -> None:
        self._local.release(name, mailbox)
        if self._local.find(name) is None:
            self._unreleased.add(name)
            self._call(self._scripts.release, name, skeleton(name), self.node_id)
            self._unreleased.discard(name)

    def names(self) -> list:
        return sorted(name.decode() for name in self._call(self._scripts.live_names))

    # --- For the shared rooms (rooms/shared.py) and devices (elsewhere.py) -------------------

    users_key = USERS
    node_prefix = NODE
    inbox_prefix = INBOX
    sessions_key = SESSIONS

    @property
    def courier(self) -> Courier:
        return self._courier

    @property
    def scripts(self) -> Scripts:
        return self._scripts

    @property
    def redis(self):
        return self._redis

    @property
    def local(self) -> LocalDirectory:
        return self._local

    def redis_call(self, method, *args, **kwargs):
        """method(*args, **kwargs) on Redis, through the circuit (DirectoryUnavailable)."""
        return self._call(lambda: method(*args, **kwargs))

    @property
    def on_room_envelope(self):
        return self._inbox.on_room

    @on_room_envelope.setter
    def on_room_envelope(self, hand_out) -> None:
        self._inbox.on_room = hand_out

    def set_away(self, name: str, message: str | None) -> None:
        if message is None:
            self._call(self._redis.hdel, AWAY, name)
        else:
            self._call(self._redis.hset, AWAY, name, message)

    def away(self) -> dict[str, str]:
        return {name.decode(): message.decode() for name, message in self._call(self._redis.hgetall, AWAY).items()}

    def away_of(self, name: str) -> str | None:
        # (Read from Redis at most once a second, as presence is: not once a message.)
        now = time.monotonic()
        if now - self._away_read_at > AWAY_FRESH:
            self._away_seen, self._away_read_at = self._away_if_reachable() or {}, now
        return self._away_seen.get(name)

    def _away_if_reachable(self) -> dict[str, str] | None:
        try:
            return self.away()
        except DirectoryUnavailable:
            return None

    def _names_if_reachable(self) -> list | None:
        try:
            return self.names()
        except DirectoryUnavailable:
            return None

    def here(self, name: str) -> Mailbox | None:
        return self._local.find(name)

    @property
    def changes(self) -> int:
        return self._local.changes

    def find(self, name: str) -> Mailbox | RemoteRecipient | None:
        mailbox = self._local.find(name)
        if mailbox is not None and (type(mailbox) is not Devices or not mailbox.on_other_nodes):
            return mailbox
        # Whether a user elsewhere exists is learnt in the same round trip that hands them
        # the message (a shared name's too: to each of its nodes).
        return RemoteRecipient(self._courier, name)

    def healthy(self) -> bool:
        return self._circuit.healthy

    # --- Heartbeat ----------------------------------------------------------------------

    def _heartbeat_loop(self):
        while True:
            gevent.sleep(self.ttl / 3)
            self._beat()

    def _beat(self) -> int | None:
        """Refresh this node's lease; register its users again in a new epoch (Redis lost what
        it had) or under a new lease (this node stalled past its TTL). The ms left of the
        epoch's recovery (0: none); None if Redis failed. One at a time, each carrying the lease
        the last left: two at once after a lapse would each take a new one, undoing the first's."""
        with self._beating:
            return self._beat_in_turn()

    def _beat_in_turn(self) -> int | None:
        try:
            epoch, lease, recovering = self._heart.beat(
                self.node_id,
                uuid.uuid4().hex,
                self._recovery_ms,
                max(1, round(self.ttl)),
                self._lease,
                uuid.uuid4().hex,
            )
            self._circuit.succeeded()
            if epoch != self._epoch or lease != self._lease:
                if self._epoch and epoch != self._epoch:
                    log.warning("Redis lost its data: registering this node's %d users again", len(self._local.names()))
                elif self._lease and lease != self._lease:  # (not a retry, nor a move: a lapse)
                    log.warning(
                        "this node's lease lapsed (it stalled past --node-ttl): claiming its %d users again",
                        len(self._local.names()),
                    )
                self._epoch, self._lease = epoch, lease
                registered = False
                try:
                    registered = self._register_local_users()
                finally:
                    if not registered and self._epoch == epoch:
                        # Not all registered again (Redis failed, or the epoch moved on
                        # meanwhile): try again soon, within the recovery, not at the next
                        # heartbeat as if it were done.
                        self._epoch = b""
                        gevent.spawn_later(REREGISTER_PAUSE, self._beat)
            for name in list(self._unreleased):
                self._scripts.release(name, skeleton(name), self.node_id)
                self._unreleased.discard(name)
        except DirectoryUnavailable:
            return None  # (said by _call, which knows whether Redis failed)
        except redis.RedisError as err:
            if not _busy(err):
                self._circuit.failed(err)
            return None
        return recovering

    def _register_local_users(self) -> bool:
        """Claim this node's users again; those taken meanwhile by a live node are logged out
        here. False when a claim could not be made now (it must be tried again)."""
        for name in self._local.names():
            mailbox = self._local.find(name)
            if mailbox is None:
                continue  # (logged out meanwhile)
            # (A shared name is one whose devices here reach the other nodes': see _share.)
            shared = type(mailbox) is Devices and mailbox.elsewhere is not None
            taken = self._claim(name, again=True, shared=shared)
            if taken < 0:
                return False
            if taken == 0:
                log.warning(
                    "%s was taken on another node while this one could not hold it; logging out here",
                    name,
                    extra=fields("name_lost", name=name),
                )
                mailbox.disconnect()
            elif shared:
                self._share(name, mailbox, taken)
        return True

    def _call(self, script, *args):
        """Run one of the scripts; DirectoryUnavailable if Redis fails (or failed a moment ago)."""
        if self._circuit.is_open():
            raise DirectoryUnavailable()  # at once: Redis failed a moment ago
        started = time.perf_counter()
        try:
            result = script(*args)
        except redis.RedisError as err:
            if not _busy(err):
                self._circuit.failed(err)
            raise DirectoryUnavailable() from err
        COUNTS.redis_round_trip.observe(time.perf_counter() - started)
        self._circuit.succeeded()
        return result


def _busy(err: Exception) -> bool:
    """Whether err says only that every pooled connection stayed busy (Redis is fine)."""
    return isinstance(err, redis.ConnectionError) and str(err).startswith("No connection available")
