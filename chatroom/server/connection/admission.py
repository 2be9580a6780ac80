"""Which new connections a server takes, and what it does with those that are slow to open.

Every listener's connections count against --max-clients from the moment they are accepted:
sessions, and connections still *opening* (a TLS handshake, a web port's HTTP request). A
connection that opens slowly must not keep others out, so when the server is full and some
are still opening, the oldest of those is dropped to make room; TLS handshakes under way are
also capped (--max-handshakes), the oldest dropped first. Connections from one address are
capped too (--max-per-ip). Refusals are counted, and summed up in the log once a second at
most, never a line each.
"""

import logging
from collections.abc import Iterator, Sized
from contextlib import contextmanager

import gevent

from ..operations.counts import COUNTS
from .limits import Limits, counts_per_address

log = logging.getLogger(__name__)

SUMMARY_PERIOD = 1.0


class Admission:
    def __init__(self, limits: Limits, sessions: Sized):
        self._limits = limits
        self._sessions = sessions
        self._opening: dict[gevent.Greenlet, str] = {}  # connections still opening, oldest first
        self._handshakes: dict[gevent.Greenlet, str] = {}  # TLS handshakes under way, oldest first
        self._per_address: dict[str, int] = {}  # connections that count against --max-per-ip
        self._refused: dict[str, int] = {}  # since the last summary, by reason
        self._summary: gevent.Greenlet | None = None

    def admit(self, host: str) -> bool:
        """Whether a new connection from host may be served (and count it if so)."""
        if len(self._sessions) + len(self._opening) >= self._limits.max_clients:
            if not self._opening:
                self._refuse("max_clients")
                return False
            self._drop_oldest(self._opening, "max_clients")  # a slow opener gives way
        if counts_per_address(self._limits, host):
            count = self._per_address.get(host, 0)
            if count >= self._limits.max_per_ip:
                self._refuse("per_ip")
                return False
            self._per_address[host] = count + 1
        COUNTS.accepted += 1
        return True

    def forget(self, host: str) -> None:
        """A connection from host is over."""
        count = self._per_address.get(host)
        if count is not None:
            if count > 1:
                self._per_address[host] = count - 1
            else:
                del self._per_address[host]

    def opening(self, peer: str):
        """While the calling greenlet opens a connection (it may be killed to make room)."""
        return _while_in(self._opening, peer)

    def handshake(self, peer: str):
        """While the calling greenlet shakes hands: one over --max-handshakes ends the oldest."""
        if len(self._handshakes) >= self._limits.max_handshakes:
            self._drop_oldest(self._handshakes, "handshakes")
        return _while_in(self._handshakes, peer)

    def stop(self) -> None:
        """End every connection still opening (the server is stopping)."""
        for greenlet in list(self._opening):
            greenlet.kill(block=False)

    def _drop_oldest(self, table: dict, reason: str) -> None:
        oldest = next(iter(table))
        del table[oldest]
        self._opening.pop(oldest, None)
        self._handshakes.pop(oldest, None)
        self._refuse(reason)
        oldest.kill(block=False)

    def _refuse(self, reason: str) -> None:
        COUNTS.count(COUNTS.refused, reason)
        self._refused[reason] = self._refused.get(reason, 0) + 1
        if self._summary is None:
            self._summary = gevent.spawn_later(SUMMARY_PERIOD, self._summarise)

    def _summarise(self) -> None:
        refused, self._refused = self._refused, {}
        self._summary = None
        what = ", ".join(f"{count} {reason}" for reason, count in sorted(refused.items()))
        log.warning(
            "refused or dropped %d connections in the last %g s (%s): see --max-clients, --max-per-ip, "
            "--max-handshakes",
            sum(refused.values()),
            SUMMARY_PERIOD,
            what,
        )


@contextmanager
def _while_in(table: dict, peer: str) -> Iterator[None]:
    """The calling greenlet is in table (as peer) while the block runs."""
    me = gevent.getcurrent()
    table[me] = peer
    try:
        yield
    finally:
        table.pop(me, None)
