"""A cluster node's room messages, posted to Redis many at a time: the messages its sessions
post while the hub runs them go together, one run of the post script, one round trip, where
each would have made its own (in a cluster node's profile, half its time was redis-py's
calls), and each node they reach is handed them in one payload. Each sender still waits for
its own message's id; a sender's messages keep their order, since it posts one at a time.
"""

import gevent
from gevent.event import AsyncResult

# What one run of the script takes at most (the rest go in the next): each node it reaches is
# handed the batch's messages in one payload, which a subscriber's output buffer in Redis
# must hold (32 MB at most, by default, and a message's text may be 256 KB).
MAX_BATCH = 256
MAX_BATCH_BYTES = 1 << 20


class Poster:
    """Runs a script once for the calls of ``post`` made while the last run was on its way,
    through ``call`` (the directory's way to Redis: the circuit breaker, DirectoryUnavailable).
    ``script_of()``: the script (redis-py's, which loads it again if Redis forgot it) on the
    directory's client of the moment. It takes ``keys`` and ``args`` first, then each post's
    keys and arguments, all of a kind, and answers a list: one answer a post, in order."""

    def __init__(self, script_of, call, keys: list, args: list):
        self._script_of = script_of
        self._call = call
        self._keys, self._args = keys, args
        self._queued: list[tuple[list, list, int, AsyncResult]] = []
        self._carrier: gevent.Greenlet | None = None

    def post(self, keys: list, args: list, size: int = 0):
        """The script's answer for this post (DirectoryUnavailable if Redis failed); ``size``:
        its bytes, as counted against MAX_BATCH_BYTES."""
        answer = AsyncResult()
        self._queued.append((keys, args, size, answer))
        if self._carrier is None:
            self._carrier = gevent.spawn(self._carry)
        return answer.get()

    def _carry(self) -> None:
        try:
            while self._queued:
                batch = self._take_batch()
                try:
                    answers = self._call(self._run, batch)
                except Exception as err:  # (DirectoryUnavailable, or a bug: no sender is left waiting)
                    for *_, answer in batch:
                        answer.set_exception(err)
                    continue
                for (*_, answer), value in zip(batch, answers, strict=True):
                    answer.set(value)
        finally:
            self._carrier = None

    def _take_batch(self) -> list:
        """The posts queued first, up to MAX_BATCH of them and MAX_BATCH_BYTES (one at least)."""
        taken = total = 0
        for taken, (_, _, size, _) in enumerate(self._queued, 1):
            total += size
            if taken == MAX_BATCH or total >= MAX_BATCH_BYTES:
                break
        batch, self._queued = self._queued[:taken], self._queued[taken:]
        return batch

    def _run(self, batch) -> list:
        keys, args = list(self._keys), list(self._args)
        for post_keys, post_args, _, _ in batch:
            keys += post_keys
            args += post_args
        return self._script_of()(keys=keys, args=args)
