"""Presence pushed to the clients that watch it: who came online and who went offline, at most
once a second, the same frame for every watcher.

Once a second, while anyone watches, the watch compares who is online with what it saw last
and sends the difference as one PRESENCE frame, encoded once. A name that came and went within
the second is not mentioned; a login storm costs each watcher one frame a second. It reads the
directory's ``names()``, so a cluster's watchers see every node's users the same way (the
LocalDirectory's ``changes`` counter spares it the work while nothing changed).
"""

from collections.abc import Callable
from typing import Protocol

import gevent

from ...codec import encode
from ...protocol import Presence

PERIOD = 1.0  # seconds between updates: a watcher gets at most one a second


class Watcher(Protocol):
    def deliver(self, frame: bytes, wait: bool = True) -> bool: ...


class PresenceWatch:
    def __init__(self, names: Callable[[], "list | None"], changes: Callable[[], int] | None = None):
        """``names()``: everyone online (None when that cannot be known now); ``changes()``: a
        number that moves whenever they may have changed (None: read names() every period)."""
        self._names = names
        self._changes = changes
        self._watchers: set[Watcher] = set()
        self._seen: set[str] = set()
        self._seen_at = -1  # changes() when _seen was read
        self._greenlet: gevent.Greenlet | None = None

    def watch(self, mailbox: Watcher) -> bytes:
        """Add a watcher; the PRESENCE frame of everyone online now, for it to start from."""
        online = self._names() or []
        if not self._watchers:
            self._seen, self._seen_at = set(online), self._changes() if self._changes else -1
        self._watchers.add(mailbox)
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)
        return encode(Presence(tuple((name, True) for name in online)))

    def unwatch(self, mailbox: Watcher) -> None:
        self._watchers.discard(mailbox)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def _run(self):
        while self._watchers:
            gevent.sleep(PERIOD)
            update = self._update()
            if update is not None:
                for mailbox in list(self._watchers):
                    mailbox.deliver(update, wait=False)

    def _update(self) -> bytes | None:
        """The frame of what changed since the last look, or None if nothing did."""
        if self._changes is not None:
            changes = self._changes()
            if changes == self._seen_at:
                return None
            self._seen_at = changes
        names = self._names()
        if names is None:
            return None  # the next period looks again
        online = set(names)
        came, went = online - self._seen, self._seen - online
        self._seen = online
        if not came and not went:
            return None
        changes_list = [(name, True) for name in sorted(came)] + [(name, False) for name in sorted(went)]
        return encode(Presence(tuple(changes_list)))
