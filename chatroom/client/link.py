"""Keeping a client connected: when its connection is lost, connect again with backoff and
log back in under the same name."""

import random
import time

import gevent
from gevent.event import Event

from .connection import ConnectionLost, NoReply
from .display import escape

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
JITTER = 0.2  # each delay is drawn from ±20% around its nominal value


def delays():
    """1 s, 2 s, 4 s... capped at 30 s, each with jitter, so that many clients of a server
    that restarted do not all come back in the same instant."""
    nominal = FIRST_DELAY
    while True:
        yield nominal * random.uniform(1 - JITTER, 1 + JITTER)
        nominal = min(nominal * 2, MAX_DELAY)


class Link:
    """Watches a client's connection and replaces it when it is lost.

    ``open_socket()`` makes a new socket to the server (raising OSError when it cannot);
    ``say(line)`` tells the user what happens (one line when the connection drops, one when it
    is back); ``on_change()`` is called whenever the state changes, and every second of a
    countdown (for a status bar). :meth:`retry_now` cuts a countdown short.
    """

    def __init__(self, client, open_socket, say, address: str = "the server"):
        self._client = client
        self._open_socket = open_socket
        self._say = say
        self._address = address
        self._retry = Event()
        self.on_change = lambda: None
        self.connected = client.connection is not None and not client.connection.lost.is_set()
        self.retry_at = 0.0
        self.trouble = ""  # why the last attempt failed
        gevent.spawn(self._run)

    def status(self) -> str:
        if self.connected:
            return "connected"
        left = max(0, round(self.retry_at - time.monotonic()))
        waiting = f"reconnecting in {left}s" if left else "reconnecting"
        return f"{waiting} ({self.trouble})" if self.trouble else waiting

    def retry_now(self) -> None:
        self._retry.set()

    def _run(self):
        while True:
            connection = self._client.connection
            connection.lost.wait()
            lost_at = time.monotonic()
            self.connected = False
            self.trouble = ""
            self._say(f"disconnected: {connection.lost_reason}; reconnecting (Enter tries at once)")
            for delay in delays():
                self._count_down(delay)
                try:
                    sock = self._open_socket()
                except OSError as err:
                    self.trouble = f"cannot connect: {err.strerror or err}"
                    continue
                if self._reattach(sock):
                    break
            self._say(f"reconnected after {round(time.monotonic() - lost_at)} s")
            self._log_in_again()
            self.on_change()

    def _count_down(self, delay: float) -> None:
        self.retry_at = time.monotonic() + delay
        self._retry.clear()
        while (left := self.retry_at - time.monotonic()) > 0 and not self._retry.is_set():
            self.on_change()
            self._retry.wait(min(1.0, left))
        self.retry_at = 0.0
        self.on_change()

    def _reattach(self, sock) -> bool:
        """Whether sock's server is a chatroom server that took the client."""
        try:
            self._client.attach(sock, self._address)
        except (ConnectionLost, NoReply):
            self.trouble = self._client.connection.lost_reason
            return False
        self.connected = True
        return True

    def _log_in_again(self) -> None:
        name = self._client.name
        if name is None:
            return
        try:
            if self._client.log_in_again(name):
                self._say(f"logged in again as {escape(name)}")
            else:
                self._say(f"could not log in again as {escape(name)}: name taken")
        except (ConnectionLost, NoReply):
            pass  # lost again at once: the watch goes on
