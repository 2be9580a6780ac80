"""Presence pushed to the clients that watch it: who came online, went away, came back or went
offline, at most once a second.

Once a second, while anyone watches, the watch compares who is online (and who of them away)
with what it saw last. A watcher of version 2 or 3 gets the difference in who is online as one
PRESENCE frame, encoded once for all of them. A watcher of version 4 has a *view*: it hears
only of the people it shares a conversation or a room with (``view.shares(name)``), and gets
their states, away messages included, as PRESENCE-STATUS. A name that came and went within
the second is not mentioned; a login storm costs each watcher one frame a second. It reads the
directory's ``names()`` and ``away()``, so a cluster's watchers see every node's users the
same way (the LocalDirectory's ``changes`` counter spares it the work while nothing changed).
"""

from collections.abc import Callable
from typing import Protocol

import gevent

from ...codec import encode
from ...device_frames import PresenceState, PresenceStatus
from ...protocol import MAX_BODY, MAX_FRAME, Presence

PERIOD = 1.0  # seconds between updates: a watcher gets at most one a second

Change = tuple[str, PresenceState, str]  # name, state, away message


class Watcher(Protocol):
    def deliver(self, frame: bytes, wait: bool = True) -> bool: ...


class View(Protocol):
    def shares(self, name: str) -> bool:
        """Whether the watcher shares a conversation or a room with name."""
        ...


class PresenceWatch:
    def __init__(
        self,
        names: Callable[[], "list | None"],
        away: Callable[[], "dict[str, str] | None"],
        changes: Callable[[], int] | None = None,
    ):
        """``names()``: everyone online, ``away()``: who is away (None when that cannot be
        known now); ``changes()``: a number that moves whenever they may have changed (None:
        read them every period)."""
        self._names = names
        self._away = away
        self._changes = changes
        self._watchers: dict[Watcher, View | None] = {}
        self._seen: dict[str, tuple[PresenceState, str]] = {}
        self._seen_at = -1  # changes() when _seen was read
        self._greenlet: gevent.Greenlet | None = None

    def watch(self, mailbox: Watcher, view: View | None = None) -> bytes:
        """Add a watcher (``view``: one of version 4); the frame of everyone online now (that
        it shares something with), for it to start from."""
        now = self._look() or {}
        if not self._watchers:
            self._seen, self._seen_at = now, self._changes() if self._changes else -1
        self._watchers[mailbox] = view
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)
        if view is None:
            return b"".join(in_frames(Presence, [(name, True) for name in now]))
        return b"".join(in_frames(PresenceStatus, [(name, *now[name]) for name in now if view.shares(name)]))

    def unwatch(self, mailbox: Watcher) -> None:
        self._watchers.pop(mailbox, None)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def _look(self) -> dict[str, tuple[PresenceState, str]] | None:
        """Everyone online, with their state and away message; None if it cannot be known."""
        names, away = self._names(), self._away()
        if names is None or away is None:
            return None
        return {
            name: (PresenceState.AWAY, away[name]) if name in away else (PresenceState.ONLINE, "") for name in names
        }

    def _run(self):
        while self._watchers:
            gevent.sleep(PERIOD)
            came, moved, went = self._update()
            changes = came + moved + went
            if not changes:
                continue
            came_or_went = [(name, True) for name, _, _ in came] + [(name, False) for name, _, _ in went]
            plain = in_frames(Presence, came_or_went) if came_or_went else []
            for mailbox, view in list(self._watchers.items()):
                if view is None:
                    frames = plain
                else:
                    seen = [change for change in changes if view.shares(change[0])]
                    frames = in_frames(PresenceStatus, seen) if seen else []
                for frame in frames:
                    mailbox.deliver(frame, wait=False)

    def _update(self) -> tuple[list[Change], list[Change], list[Change]]:
        """What changed since the last look: who came (online or away), who went away or came
        back, and who went offline; each sorted by name."""
        if self._changes is not None:
            changes = self._changes()
            if changes == self._seen_at:
                return [], [], []
            self._seen_at = changes
        now = self._look()
        if now is None:
            return [], [], []  # the next period looks again
        before, self._seen = self._seen, now
        came = [(name, *now[name]) for name in sorted(now.keys() - before.keys())]
        moved = [(name, *now[name]) for name in sorted(now.keys() & before.keys()) if now[name] != before[name]]
        went = [(name, PresenceState.OFFLINE, "") for name in sorted(before.keys() - now.keys())]
        return came, moved, went


def in_frames(kind: Callable[[tuple], object], entries: list) -> list[bytes]:
    """kind(entries), a PRESENCE or PRESENCE-STATUS, as frames of at most MAX_BODY each: one
    where it fits; else as many as it takes (everyone online at once, with away messages, can
    be more than a frame holds), which a client applies one after the other, to the same end."""
    whole = encode(kind(tuple(entries)))
    if len(whole) <= MAX_FRAME:
        return [whole]
    frames: list[bytes] = []
    part: list = []
    size, empty = 0, len(encode(kind(())))
    for entry in entries:
        entry_size = len(encode(kind((entry,)))) - empty
        if part and size + entry_size > MAX_BODY:
            frames.append(encode(kind(tuple(part))))
            part, size = [], 0
        part.append(entry)
        size += entry_size
    frames.append(encode(kind(tuple(part))))
    return frames
