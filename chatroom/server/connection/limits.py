"""The limits a server puts on each connection, with their defaults and their help.

One place for them, so that the command line, the README and the session agree.
"""

import ipaddress
from dataclasses import dataclass, fields


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
    "max_per_ip": (int, "N", "connections from one address at once; more are closed (default %(default)s)"),
    "limit_loopback": (bool, None, "apply --max-per-ip to loopback addresses too (by default they are exempt)"),
    "max_handshakes": (
        int,
        "N",
        "TLS handshakes under way at once; one more drops the oldest (default %(default)s)",
    ),
}


def add_arguments(group) -> None:
    """Add a --option for each limit to an argparse parser or group."""
    for field in fields(Limits):
        kind, metavar, help_text = OPTIONS[field.name]
        flag = "--" + field.name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, action="store_true", default=field.default, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=field.default, metavar=metavar, help=help_text)


def from_arguments(args) -> Limits:
    return Limits(**{field.name: getattr(args, field.name) for field in fields(Limits)})


def counts_per_address(limits: Limits, host: str) -> bool:
    """Whether connections from host count against --max-per-ip."""
    if limits.limit_loopback:
        return True
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
