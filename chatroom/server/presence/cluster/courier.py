"""Carrying messages to the users of other nodes: batches, settling, the circuit breaker.

A session hands every cross-node message of a read to the :class:`Courier` before it waits
for any answer; the courier carries whatever is queued to Redis in one round trip (one
script run, one SPUBLISH per destination node), and each message's AsyncResult learns
whether its node took it. A batch that loses its reply is *settled* through its marker key:
it either ran (its answers are there), or it never will (past its deadline it publishes
nothing). The :class:`Circuit` makes requests fail at once for a moment after Redis failed.
"""

import logging
import time
from collections.abc import Callable

import gevent
import redis
from gevent.event import AsyncResult
from redis.connection import ConnectionInterface

from ...operations.counts import COUNTS
from .handing import envelope
from .scripts import BATCH, Scripts

log = logging.getLogger(__name__)

MARKER_MS = 60_000  # how long a batch's answers are kept, for a sender that lost the reply
SEND_DEADLINE = 1.5  # a batch not run by Redis this long after it was sent never publishes
SETTLE_TIMEOUT = 1.0  # past the deadline, how long a sender may wait to learn what became of it
SETTLE_PAUSE = 0.1
CIRCUIT_PAUSE = 1.0  # after a failure, requests fail at once for this long, then one tries


class Circuit:
    """Whether Redis is taken to be reachable, and the breaker that spares it (and the
    sessions) requests bound to fail: for CIRCUIT_PAUSE after a failure they fail at once,
    then one tries; its failure opens the circuit again. ``on_moved`` is called instead when
    a Redis Cluster answers that the directory's slot is served elsewhere: not a failure."""

    def __init__(self, on_moved: Callable[[], None]):
        self.healthy = True
        self._failed_at = 0.0
        self._on_moved = on_moved

    def is_open(self) -> bool:
        return not self.healthy and time.monotonic() - self._failed_at < CIRCUIT_PAUSE

    def failed(self, err: Exception) -> None:
        if isinstance(err, redis.exceptions.MovedError):
            self._on_moved()
            return
        self._failed_at = time.monotonic()
        COUNTS.redis_errors += 1
        if self.healthy:
            self.healthy = False
            log.warning("Redis unreachable (%s); requests that need it fail until it is back", err)

    def succeeded(self) -> None:
        if not self.healthy:
            self.healthy = True
            log.warning("Redis reachable again")


class Courier:
    """Batches of messages from this node to the others, through Redis."""

    def __init__(self, node_id: str, circuit: Circuit):
        self._node_id = node_id
        self._circuit = circuit
        self._scripts: Scripts | None = None
        self._client: redis.Redis | None = None
        self._connection: ConnectionInterface | None = None  # the batches' own (see use)
        self._outgoing: list[tuple[bytes, AsyncResult]] = []  # waiting for the next batch
        self._batches = 0
        self._carrier: gevent.Greenlet | None = None  # carrying batches, while there are any

    def use(self, scripts: Scripts, client: redis.Redis) -> None:
        """Carry batches with these scripts through this client from now on: on a connection
        of its own, one batch at a time (each waits at most the client's socket timeout, and
        is not retried: a lost reply is settled instead, through the client's others)."""
        self._scripts = scripts
        self._client = client
        self._connection = client.connection_pool.make_connection()

    def send_later(self, recipient: str, frame: bytes) -> AsyncResult:
        answer = AsyncResult()
        self._outgoing.append((envelope(recipient, frame), answer))
        if self._carrier is None:
            self._carrier = gevent.spawn(self._carry)
        return answer

    def _carry(self):
        try:
            while self._outgoing:
                self._carry_batch()
        finally:
            self._carrier = None

    def _carry_batch(self):
        """Carry what is queued to Redis, in one round trip, and set each message's answer."""
        batch, self._outgoing = self._outgoing, []
        if self._circuit.is_open():  # fail at once: Redis failed a moment ago
            for _, answer in batch:
                answer.set_exception(redis.ConnectionError("Redis is known to be unreachable"))
            return
        assert self._scripts is not None
        self._batches += 1
        marker = f"{BATCH}{self._node_id}:{self._batches}"
        deadline = time.time() + SEND_DEADLINE
        envelopes = b"".join([payload for payload, _ in batch])
        started = time.perf_counter()
        try:
            answers = self._scripts.send_batch(
                marker, MARKER_MS, int(deadline * 1000), envelopes, self._node_id, self._connection
            )
        except redis.RedisError as err:
            self._circuit.failed(err)
            # MOVED: the batch was refused, not run; otherwise it may have run after all.
            settled = None if isinstance(err, redis.exceptions.MovedError) else self._settle(marker, deadline)
            if settled is None:
                for _, answer in batch:
                    answer.set_exception(err)
                return
            answers = settled
        else:
            COUNTS.redis_round_trip.observe(time.perf_counter() - started)
            self._circuit.succeeded()
        COUNTS.cross_node += answers.count(b"1")
        for (_, answer), handed in zip(batch, answers.decode(), strict=True):
            answer.set(handed == "1")

    def _settle(self, marker: str, deadline: float) -> bytes | None:
        """After a batch failed: its answers if it ran after all (the reply may be what was
        lost), else None once it is sure not to run (past its deadline it publishes nothing),
        or once Redis stayed away SETTLE_TIMEOUT past the deadline (then nobody can tell)."""
        assert self._client is not None
        while time.time() < deadline + SETTLE_TIMEOUT:
            try:
                answers = self._client.get(marker)
            except redis.RedisError as err:
                self._circuit.failed(err)  # keeps the circuit open meanwhile
                gevent.sleep(SETTLE_PAUSE)
                continue
            if answers is not None:
                return answers.encode() if isinstance(answers, str) else answers
            if time.time() > deadline:
                return None
            gevent.sleep(SETTLE_PAUSE)
        log.warning("Redis went away with a batch of cross-node messages: answered FAILURE, delivery unknown")
        return None
