"""Keeping a client connected: when its connection is lost, connect again with backoff and
log back in under the same name."""

import random
import time

import gevent

from .connection import ConnectionLost, NoReply

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
JITTER = 0.2  # each delay is drawn from ±20% around its nominal value


def delays():
    """1 s, 2 s, 4 s... capped at 60 s, each with jitter, so that many clients of a server
    that restarted do not all come back in the same instant."""
    nominal = FIRST_DELAY
    while True:
        yield nominal * random.uniform(1 - JITTER, 1 + JITTER)
        nominal = min(nominal * 2, MAX_DELAY)


class Link:
    """Watches a client's connection and replaces it when it is lost.

    ``open_socket()`` makes a new socket to the server (raising OSError when it cannot);
    ``say(line)`` tells the user what happens; ``on_change()`` is called whenever the state
    changes (for a status bar).
    """

    def __init__(self, client, open_socket, say):
        self._client = client
        self._open_socket = open_socket
        self._say = say
        self.on_change = lambda: None
        self.connected = client.connection is not None
        self.retry_at = 0.0
        gevent.spawn(self._run)

    def status(self) -> str:
        if self.connected:
            return "connected"
        return f"reconnecting in {max(0, round(self.retry_at - time.monotonic()))}s"

    def _run(self):
        while True:
            connection = self._client.connection
            connection.lost.wait()
            reason = connection.lost_reason
            self.connected = False
            for delay in delays():
                self.retry_at = time.monotonic() + delay
                self.on_change()
                self._say(f"disconnected: {reason}; reconnecting in {delay:.0f}s")
                gevent.sleep(delay)
                try:
                    sock = self._open_socket()
                except OSError as err:
                    reason = f"cannot connect: {err.strerror or err}"
                    continue
                break
            self._reattach(sock)

    def _reattach(self, sock):
        name = self._client.name
        try:
            self._client.attach(sock)
            self._say("reconnected")
            if name is not None:
                if self._client.log_in_again(name):
                    self._say(f"logged in again as {name}")
                else:
                    self._say(f"could not log in again as {name}: name taken")
        except (ConnectionLost, NoReply):
            pass  # lost again at once: the watch goes on
        self.connected = True
        self.on_change()
