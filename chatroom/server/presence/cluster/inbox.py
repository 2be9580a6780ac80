"""A node's inbox: the batches other nodes publish to it, handed to its users' sessions.

The inbox is a sharded pub/sub subscription (SSUBSCRIBE) on the Redis server that holds the
directory's slot; SPUBLISH answers how many subscribers took a batch, so a sender hears OK
only once this node has it. The subscription waits as long as it takes (no read timeout, but
keepalive), and is made again, where the directory is then, whenever it ends.
"""

import logging
from collections.abc import Callable

import gevent
import redis

from ....codec import without_id
from ..directory import LocalDirectory
from .courier import Circuit
from .scripts import INBOX, open_envelopes

log = logging.getLogger(__name__)

RETRY_PAUSE = 0.5


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
    ):
        """``address()``: the Redis server to subscribe at; ``on_reconnect``: called when the
        subscription is made again after Redis failed; ``follow``: find where the directory
        is, after the subscription ended."""
        self._channel = INBOX + node_id
        self._local = local
        self._circuit = circuit
        self._address = address
        self._on_reconnect = on_reconnect
        self._follow = follow
        self.on_room: Callable[[str, bytes], None] | None = None  # a room's frame, for its members here

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
        subscriber = redis.Redis.from_url(self._address(), socket_connect_timeout=1.0, socket_keepalive=True)
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.ssubscribe(self._channel)
            if not self._circuit.healthy:
                gevent.spawn(self._on_reconnect)  # Redis is back: register again now
            # listen() ends if Redis Cluster moves the channel's slot elsewhere (it
            # unsubscribes us): then the loop finds where it went and subscribes there.
            for message in pubsub.listen():
                if message["type"] == "smessage":
                    self._deliver(message["data"])
        except redis.RedisError as err:
            self._circuit.failed(err)
        finally:
            pubsub.close()
            subscriber.close()

    def _deliver(self, batch: bytes) -> None:
        for recipient, frame in open_envelopes(batch):
            if recipient[:1] == "#":
                if self.on_room is not None:
                    try:
                        self.on_room(recipient, frame)
                    except Exception:  # a bug, not the network: the inbox must go on
                        log.exception("room %s: a frame could not be handed out", recipient)
                continue
            mailbox = self._local.find(recipient)
            # Never wait for room here: one slow recipient must not hold up the whole inbox.
            if mailbox is not None:  # else logged out meanwhile
                mailbox.deliver(frame if mailbox.wants_ids else without_id(frame), wait=False)
