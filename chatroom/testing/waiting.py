"""Bounded waiting, and free ports: every wait in a test has a bound (WAIT unless said
otherwise), so that a bug fails a test instead of hanging it."""

import socket as std_socket

import gevent

WAIT = 5.0  # the bound on any single wait in a test


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with std_socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def eventually(check, timeout: float = WAIT, interval: float = 0.01, what: str | None = None):
    """Poll check() until it returns a true value (returned), failing after timeout seconds
    (with what, if given, as the thing never seen)."""
    with gevent.Timeout(timeout, AssertionError(f"never saw {what}" if what else f"condition never held: {check}")):
        while True:
            result = check()
            if result:
                return result
            gevent.sleep(interval)
