"""A node's inbox: the batches other nodes hand to it, given to its users' sessions.

The inbox is a Redis stream, ``{chatroom}:inbox:ID``, on the Redis server that holds the
directory's slot: a batch answered OK is an entry of it, in Redis's data, until this node has
read it; so a restart of Redis (with its append-only file) or a lost connection loses none.
The node reads from the last entry it has taken, waiting as long as it takes (no read
timeout, but keepalive), and trims what it has read now and then. When the reading ends (Redis
away, the slot moved) it starts again, where the directory is then.
"""

import time
from collections.abc import Callable
from typing import Any

import gevent
import redis

from ..directory import LocalDirectory
from .courier import Circuit
from .scripts import INBOX, open_envelopes

RETRY_PAUSE = 0.5
READ_COUNT = 256  # entries taken at one read
TRIM_PERIOD = 1.0  # seconds between trims of what was read


class DirectoryMoved(Exception):
    """Raised in the inbox's greenlet: read again, where the directory is now."""


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
        """``address()``: the Redis server to read at; ``on_reconnect``: called when reading
        starts again after Redis failed; ``follow``: find where the directory is, after the
        reading ended."""
        self._stream = INBOX + node_id
        self._local = local
        self._circuit = circuit
        self._address = address
        self._on_reconnect = on_reconnect
        self._follow = follow
        self._last = b"0-0"  # the last entry taken
        self._trimmed_at = 0.0

    def run(self) -> None:
        while True:
            try:
                self._read()
                gevent.sleep(RETRY_PAUSE)
                self._follow()
            except DirectoryMoved:
                pass  # read again at once, where the directory is now

    def _read(self) -> None:
        """Take the batches other nodes hand to this one, until reading fails."""
        reader = redis.Redis.from_url(self._address(), socket_connect_timeout=1.0, socket_keepalive=True)
        try:
            reader.ping()
            if not self._circuit.healthy:
                gevent.spawn(self._on_reconnect)  # Redis is back: register again now
            while True:
                streams: Any = reader.xread({self._stream: self._last}, count=READ_COUNT, block=0)
                for _, entries in streams or ():
                    for entry_id, fields in entries:
                        self._deliver(fields[b"m"])
                        self._last = entry_id
                self._trim(reader)
        except redis.RedisError as err:
            # A master that steps down unblocks its readers: the directory moved, Redis is fine.
            if not str(err).startswith("UNBLOCKED"):
                self._circuit.failed(err)
        finally:
            reader.close()

    def _trim(self, reader) -> None:
        now = time.monotonic()
        if now - self._trimmed_at >= TRIM_PERIOD:
            self._trimmed_at = now
            reader.xtrim(self._stream, minid=self._last)  # (the last one read stays: it marks the place)

    def _deliver(self, batch: bytes) -> None:
        for recipient, frame in open_envelopes(batch):
            mailbox = self._local.find(recipient)
            # Never wait for room here: one slow recipient must not hold up the whole inbox.
            if mailbox is not None:  # else logged out meanwhile
                mailbox.deliver(frame, wait=False)
