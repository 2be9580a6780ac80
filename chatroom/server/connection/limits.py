"""The limits a server puts on each connection, with their defaults and their help.

One place for them, so that the command line, the README and the session agree.
"""

import time
from dataclasses import dataclass

from ...arguments import add_dataclass_arguments, dataclass_from_arguments
from ..addresses import is_loopback


@dataclass(frozen=True)
class Limits:
    sendq: int = 1 << 20
    send_timeout: float = 5.0
    frame_timeout: float = 30.0
    idle_timeout: float = 60.0
    rate_limit: float | None = None
    max_clients: int = 10000
    max_per_ip: int = 64
    limit_loopback: bool = False
    max_handshakes: int = 1000


# For each limit: its command-line type, metavar and help.
OPTIONS = {
    "sendq": (int, "BYTES", "bytes queued for one client before senders to it must wait (default %(default)s)"),
    "send_timeout": (
        float,
        "SECONDS",
        "how long a sender waits for room before the recipient is dropped as stalled (default %(default)s)",
    ),
    "frame_timeout": (float, "SECONDS", "time a frame may take from its first byte to its last (default %(default)s)"),
    "idle_timeout": (
        float,
        "SECONDS",
        "a connection that has not completed a frame this long after connecting is closed (default %(default)s)",
    ),
    "rate_limit": (float, "N", "frames per second a connection may send before it is read more slowly (default off)"),
    "max_clients": (
        int,
        "N",
        "connections served at once, TLS handshakes included; more are closed as they arrive (default %(default)s)",
    ),
    "max_per_ip": (
        int,
        "N",
        "connections from one address (an IPv6 one's /64) at once; more are closed (default %(default)s)",
    ),
    "limit_loopback": (bool, None, "apply --max-per-ip to loopback addresses too (by default they are exempt)"),
    "max_handshakes": (
        int,
        "N",
        "TLS handshakes under way at once; one more drops the oldest (default %(default)s)",
    ),
}


def add_arguments(group) -> None:
    """Add a --option for each limit to an argparse parser or group."""
    add_dataclass_arguments(group, Limits, OPTIONS)


def from_arguments(args) -> Limits:
    return dataclass_from_arguments(Limits, args)


def counts_per_address(limits: Limits, host: str) -> bool:
    """Whether connections from host (a counted address) count against --max-per-ip."""
    return limits.limit_loopback or not is_loopback(host)


class TokenBucket:
    """``rate`` tokens a second, holding at most as many: a connection's frames (--rate-limit),
    a WebSocket's pongs."""

    __slots__ = ("_rate", "_tokens", "_last")

    def __init__(self, rate: float):
        self._rate = rate
        self._tokens = rate
        self._last = time.monotonic()

    def take(self) -> float:
        """Take a token: 0.0; or, with none left, the seconds until there is one (none taken)."""
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return (1 - self._tokens) / self._rate
        self._tokens -= 1
        return 0.0
