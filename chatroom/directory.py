"""Presence and routing: who is logged in, and where to hand a message for them.

The server talks to a directory only through the four methods of :class:`Directory`. The
in-process :class:`LocalDirectory` is the default; a shared backend can replace it so that
several server processes act as one chat.

A *mailbox* is whatever accepts messages for one logged-in user: it has
``deliver(frame, wait=True) -> bool``, taking the ready-encoded frame the recipient is to
receive and answering True once it is handed to the recipient's connection (or, for a user
on another server, to that server).
"""

from typing import Protocol


class DirectoryUnavailable(Exception):
    """The directory cannot answer right now; the request it served gets FAILURE."""


class Mailbox(Protocol):
    def deliver(self, frame: bytes, wait: bool = True) -> bool: ...


class Directory(Protocol):
    def claim(self, name: str, mailbox: Mailbox) -> bool:
        """Log ``name`` in at ``mailbox``; False if the name is taken."""

    def release(self, name: str, mailbox: Mailbox) -> None:
        """Log ``name`` out, if it is still held by ``mailbox``."""

    def names(self) -> list:
        """Everyone logged in, sorted by code point."""

    def find(self, name: str) -> Mailbox | None:
        """The mailbox of ``name``, or None if nobody of that name is logged in."""


class LocalDirectory:
    """The directory of a single server process: a dict from username to mailbox."""

    def __init__(self):
        self._mailboxes = {}

    def claim(self, name, mailbox):
        if name in self._mailboxes:
            return False
        self._mailboxes[name] = mailbox
        return True

    def release(self, name, mailbox):
        if self._mailboxes.get(name) is mailbox:
            del self._mailboxes[name]

    def names(self):
        return sorted(self._mailboxes)

    def find(self, name):
        return self._mailboxes.get(name)
