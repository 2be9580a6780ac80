"""A node's inbox: the batches other nodes publish to it, handed to its users' sessions.

The inbox is a sharded pub/sub subscription (SSUBSCRIBE) on the Redis server that holds the
directory's slot; SPUBLISH answers how many subscribers took a batch, so a sender hears OK
only once this node has it. The subscription waits as long as it takes (no read timeout, but
keepalive), and is made again, where the directory is then, whenever it ends.

A subscription can end with batches that SPUBLISH counted as taken still in Redis's output
buffer (Redis restarted, or dropped a subscriber that fell too far behind). Every batch is
also kept in the inbox's stream under the id it was published with (handing.HAND), so after
subscribing again the inbox reads what came after the last batch it took, before anything
newer: nothing answered OK is lost, and nothing is handed out twice (a batch whose id is not
past the last one taken is one already handed out).
"""

import logging
from collections.abc import Callable

import gevent
import redis

from ....codec import without_id
from ....device_frames import END_SESSION
from ..devices import Devices
from ..directory import LocalDirectory
from ..redis_link import redis_client
from .courier import Circuit
from .handing import SHARED, open_envelopes
from .scripts import INBOX

log = logging.getLogger(__name__)

RETRY_PAUSE = 0.5
CATCH_UP_PAGE = 500  # batches read from the stream at a time
NOTHING_YET = (0, 0)  # the last entry taken, when the stream was empty at the start


class DirectoryMoved(Exception):
    """Raised in the inbox's greenlet: subscribe again, where the directory is now."""


class Inbox:
    def __init__(
        self,
        node_id: str,
        local: LocalDirectory,
        circuit: Circuit,
        address: Callable[[], str],
        on_reconnect: Callable[[], object],
        follow: Callable[[], None],
        on_shared: Callable[[str, int], None],
    ):
        """``address()``: the Redis server to subscribe at; ``on_reconnect``: called when the
        subscription is made again after Redis failed; ``follow``: find where the directory
        is, after the subscription ended; ``on_shared(name, nodes)``: how many nodes hold a
        shared name now (a notice from the one where it changed)."""
        self._channel = INBOX + node_id
        self._local = local
        self._circuit = circuit
        self._address = address
        self._on_reconnect = on_reconnect
        self._follow = follow
        self._on_shared = on_shared
        self.on_room: Callable[[str, bytes], None] | None = None  # a room's frame, for its members here
        # The stream entry of the last batch handed out, as (milliseconds, sequence): what its
        # id says, kept parsed, since every batch is compared with it.
        self._last_taken: tuple[int, int] | None = None

    def run(self) -> None:
        while True:
            try:
                self._listen()
                gevent.sleep(RETRY_PAUSE)
                self._follow()
            except DirectoryMoved:
                pass  # subscribe again at once, where the directory is now

    def _listen(self) -> None:
        """Take the batches other nodes publish to this one, until the subscription ends."""
        subscriber = redis_client(self._address(), socket_connect_timeout=1.0, socket_keepalive=True)
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        try:
            if self._last_taken is None:
                # The first subscription starts after what the stream holds now: what was
                # published before it was answered as not taken.
                newest = _batches(subscriber.xrevrange(self._channel, count=1))
                self._last_taken = _entry_order(newest[0][0]) if newest else NOTHING_YET
            pubsub.ssubscribe(self._channel)
            if not self._circuit.healthy:
                gevent.spawn(self._on_reconnect)  # Redis is back: register again now
            self._catch_up(subscriber)
            # listen() ends if Redis Cluster moves the channel's slot elsewhere (it
            # unsubscribes us): then the loop finds where it went and subscribes there.
            for message in pubsub.listen():
                if message["type"] == "smessage":
                    data = message["data"]
                    entry_end = 1 + data[0]
                    self._take(data[1:entry_end], data[entry_end:])
        except redis.RedisError as err:
            self._circuit.failed(err)
        finally:
            pubsub.close()
            subscriber.close()

    def _catch_up(self, client: redis.Redis) -> None:
        """Hand out the batches the stream holds past the last one taken: those a former
        subscription lost (none, usually). Newer ones wait in the new subscription meanwhile."""
        assert self._last_taken is not None
        since = self._last_taken
        if since != NOTHING_YET:
            kept = _batches(client.xrange(self._channel, min=_entry_id(since), count=1))
            if not kept or _entry_order(kept[0][0]) != since:
                log.warning("inbox: Redis no longer holds the batches after the last one taken; some may be lost")
        caught_up = 0
        while True:
            after = "(" + _entry_id(self._last_taken)
            page = _batches(client.xrange(self._channel, min=after, count=CATCH_UP_PAGE))
            for entry, batch in page:
                self._take(entry, batch)
            caught_up += len(page)
            if len(page) < CATCH_UP_PAGE:
                break
        if caught_up:
            log.warning("inbox: %d batches read again from Redis after the subscription ended", caught_up)

    def _take(self, entry: bytes, batch: bytes) -> None:
        """Hand a batch out unless it was already (read from the stream, then published)."""
        assert self._last_taken is not None
        order = _entry_order(entry)
        if order <= self._last_taken:
            return
        self._last_taken = order
        self._deliver(batch)

    def _deliver(self, batch: bytes) -> None:
        for recipient, frame in open_envelopes(batch):
            if recipient[:1] == "#":
                if self.on_room is not None:
                    try:
                        self.on_room(recipient, frame)
                    except Exception:  # a bug, not the network: the inbox must go on
                        log.exception("room %s: a frame could not be handed out", recipient)
                continue
            if not recipient:  # a notice for this node
                if frame[0] == SHARED:
                    name_end = 6 + frame[5]
                    self._on_shared(frame[6:name_end].decode(), frame[name_end])
                continue
            mailbox = self._local.find(recipient.lstrip(" "))
            if recipient[0] == " " and frame[0] == END_SESSION:  # (another node's device ends one here)
                if type(mailbox) is Devices:
                    mailbox.end_here(int.from_bytes(frame[5:9], "big"))
                continue
            # Never wait for room here: one slow recipient must not hold up the whole inbox.
            if mailbox is not None:  # else logged out meanwhile
                mailbox.deliver(frame if mailbox.wants_ids else without_id(frame), wait=False)


def forget_gone_inboxes(scripts) -> None:
    """What crashed nodes left in Redis (their inboxes' streams, up to KEPT_BATCHES batches
    each) goes when a node starts."""
    try:
        forgotten = scripts.forget_gone_inboxes()
    except redis.RedisError:
        return  # (the next node to start tries again)
    if forgotten:
        log.info("the inboxes of %d nodes that are gone were deleted from Redis", forgotten)


def _batches(entries) -> list[tuple[bytes, bytes]]:
    """(entry id, batch) for each entry of an inbox's stream that Redis answered with."""
    return [(entry, fields[b"b"]) for entry, fields in entries or ()]


def _entry_order(entry: bytes) -> tuple[int, int]:
    """A stream entry id ("MILLISECONDS-SEQUENCE") as what orders it."""
    milliseconds, _, sequence = entry.partition(b"-")
    return int(milliseconds), int(sequence)


def _entry_id(order: tuple[int, int]) -> str:
    return f"{order[0]}-{order[1]}"
