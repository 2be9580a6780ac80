"""The limits a server puts on each connection, with their defaults and their help.

One place for them, so that the command line, the README and the session agree.
"""

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    sendq: int = 1 << 20
    send_timeout: float = 5.0
    frame_timeout: float = 30.0
    rate_limit: float | None = None
    max_clients: int = 10000


# For each limit: its command-line type, metavar and help.
OPTIONS = {
    "sendq": (int, "BYTES", "bytes queued for one client before senders to it must wait (default %(default)s)"),
    "send_timeout": (
        float,
        "SECONDS",
        "how long a sender waits for room before the recipient is dropped as stalled (default %(default)s)",
    ),
    "frame_timeout": (float, "SECONDS", "time a frame may take from its first byte to its last (default %(default)s)"),
    "rate_limit": (float, "N", "frames per second a connection may send before it is read more slowly (default off)"),
    "max_clients": (int, "N", "connections served at once; more are closed as they arrive (default %(default)s)"),
}


def add_arguments(group) -> None:
    """Add a --option for each limit to an argparse parser or group."""
    for field in fields(Limits):
        kind, metavar, help_text = OPTIONS[field.name]
        flag = "--" + field.name.replace("_", "-")
        group.add_argument(flag, type=kind, default=field.default, metavar=metavar, help=help_text)


def from_arguments(args) -> Limits:
    return Limits(**{field.name: getattr(args, field.name) for field in fields(Limits)})
