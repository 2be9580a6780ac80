"""Presence and routing: who is logged in, and where to hand a message for them.

The server talks to a directory only through :class:`Directory`. The in-process
:class:`LocalDirectory` is the default; a shared backend (``cluster.RedisDirectory``) can
replace it so that several server processes act as one chat.

A *mailbox* (:class:`Mailbox`) accepts messages for one user logged in on this server: their
session. A user logged in on another server is a :class:`RemoteRecipient`: a message for
them is handed over to that server, and answered later.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeAlias, final

from gevent.event import AsyncResult

from .skeleton import load_table, skeleton
from .watch import PresenceWatch

if TYPE_CHECKING:
    from ..connection.outbox import Outbox


class DirectoryUnavailable(Exception):
    """The directory cannot answer right now; the request it served gets FAILURE."""


class Offers(Protocol):
    """A room sink other than an outbox (a user's devices): offered a room's frame."""

    def offer(self, frame: bytes) -> bool: ...


# What a room hands a member's copy of its messages to: a session's outbox, which the fan-out
# queues into itself, or something offered them (see fanout.offer_each).
RoomSink: TypeAlias = "Outbox | Offers"


class Mailbox(Protocol):
    wants_ids: bool  # its client takes relayed messages with their ids (DIRECT-MESSAGE)

    def deliver(self, frame: bytes, wait: bool = True) -> bool:
        """Hand over a ready-encoded frame for the user; True once it is queued on their
        connection. ``wait``: whether a full queue may make the caller wait."""
        ...

    def offer(self, frame: bytes) -> bool:
        """Hand over a frame without ever waiting: a connection whose queue is full is dropped
        as stalled instead (a room's message never waits on one slow member)."""
        ...

    def room_sink(self) -> RoomSink:
        """Where offer's frames go, offered there directly: a room keeps its members' (see
        Rooms.tell). A session's outbox, which the room's fan-out queues into without a call."""
        ...

    def disconnect(self) -> None:
        """End the user's connection (a directory does so when it finds the name lost)."""
        ...

    def end_session(self) -> None:
        """End the session at its user's asking, from another of its sessions (END-SESSION):
        told so once its replies are out, its tokens revoked, logged out."""
        ...


class Connection(Mailbox, Protocol):
    """A client's own connection, as its rules see it: its user's mailbox, and where the
    replies to its requests go."""

    def hold_pushes(self) -> None:
        """What others push to the client from now on follows the reply being built: one
        made from a snapshot of shared state (a room's members, who is online) must not come
        after an event that changed what it shows."""
        ...


class _Ended:
    """The mailbox of a connection that has ended: it takes nothing."""

    wants_ids = False

    def deliver(self, frame: bytes, wait: bool = True) -> bool:
        return False

    def offer(self, frame: bytes) -> bool:
        return False

    def room_sink(self) -> RoomSink:
        return self

    def disconnect(self) -> None:
        pass

    def end_session(self) -> None:
        pass

    def hold_pushes(self) -> None:
        pass


ENDED: Connection = _Ended()


class Courier(Protocol):
    def send_later(self, recipient: str, frame: bytes) -> AsyncResult:
        """Queue frame for the server recipient is on; the result becomes True once that
        server has it, False if nobody of that name is there, or an exception."""
        ...


@final  # (matched by its exact type on the relay path)
class RemoteRecipient:
    """A user who is not on this server (and may be on none): a message for them goes through
    the courier, and its outcome is known later. A session hands over every message of a batch
    of frames before it waits for any outcome, so that they travel together."""

    __slots__ = ("_courier", "name")

    def __init__(self, courier: Courier, name: str):
        self._courier = courier
        self.name = name

    def hand_over(self, frame: bytes) -> AsyncResult:
        return self._courier.send_later(self.name, frame)


class Directory(Protocol):
    """Names are unique, and so are their confusable skeletons: a name that looks like one
    logged in cannot be claimed. ``presence`` pushes who comes and goes to those who watch."""

    presence: PresenceWatch

    @property
    def changes(self) -> int:
        """A count that moves whenever a name is claimed or released here (or goes away or
        comes back): what was found before it moved may have changed."""
        ...

    def start(self) -> None:
        """Begin serving (connect, start background work); the server calls it once."""

    def stop(self) -> None:
        """Release what start() took, logging out this server's users."""

    def healthy(self) -> bool:
        """Whether it can answer now (a shared directory: whether its store is reachable)."""

    def claim(self, name: str, mailbox: Mailbox, shared: bool = False) -> bool:
        """Log ``name`` in at ``mailbox``; False if the name is taken. ``shared``: a
        registered user's devices (a Devices), which a shared directory lets log in at other
        servers too (on one server they are one mailbox, see :meth:`here`)."""

    def holder(self, name: str) -> str | None:
        """After a refused claim: the name logged in that ``name`` clashes with (itself, or
        one that looks like it); None if there is none (the claim was refused for now)."""

    def release(self, name: str, mailbox: Mailbox) -> None:
        """Log ``name`` out, if it is still held by ``mailbox``."""

    def names(self) -> list:
        """Everyone logged in, sorted by code point."""

    def set_away(self, name: str, message: str | None) -> None:
        """Mark name away (with its message), or back (None)."""

    def away(self) -> "dict[str, str] | None":
        """Who is away, with their messages (None when that cannot be known now); a name no
        longer logged in may linger here, and counts for nothing."""

    def away_of(self, name: str) -> str | None:
        """name's away message while they are away (None: not away, or not known now); asked
        per message (IRC's 301), so a shared directory may answer from a second-old view."""

    def share(self, name: str) -> None:
        """``name``, logged in here, has just been registered: claim it as ``shared`` now."""

    def here(self, name: str) -> Mailbox | None:
        """The mailbox of ``name`` on this server, if it is logged in here."""

    def find(self, name: str) -> Mailbox | RemoteRecipient | None:
        """The mailbox of ``name`` on this server; or a RemoteRecipient, when a shared
        directory learns only in the hand-over whether they are logged in elsewhere; or None,
        when nobody of that name is logged in."""


class LocalDirectory:
    """The directory of a single server process: a dict from username to mailbox."""

    def __init__(self) -> None:
        self._mailboxes: dict[str, Mailbox] = {}
        # The dict's own look-up, no method around it: a room's message asks once per member.
        self.find: Callable[[str], Mailbox | None] = self._mailboxes.get
        self.here = self.find
        self._look_alikes: dict[str, str] = {}  # skeleton -> the name logged in with it
        self._away: dict[str, str] = {}  # name -> its away message
        # The same for who is away: the IRC port asks for every message it relays.
        self.away_of: Callable[[str], str | None] = self._away.get
        self._changes = 0  # claims, releases and away changes so far
        self.presence = PresenceWatch(self.names, self.away, lambda: self._changes)

    @property
    def changes(self) -> int:
        return self._changes

    def start(self) -> None:
        load_table()  # now, rather than in the first login

    def stop(self) -> None:
        self.presence.stop()
        self._mailboxes.clear()
        self._look_alikes.clear()

    def healthy(self) -> bool:
        return True

    def claim(self, name: str, mailbox: Mailbox, shared: bool = False) -> bool:
        look = skeleton(name)
        if name in self._mailboxes or look in self._look_alikes:
            return False
        self._mailboxes[name] = mailbox
        self._look_alikes[look] = name
        self._changes += 1
        return True

    def holder(self, name: str) -> str | None:
        return name if name in self._mailboxes else self._look_alikes.get(skeleton(name))

    def release(self, name: str, mailbox: Mailbox) -> None:
        if self._mailboxes.get(name) is mailbox:
            del self._mailboxes[name]
            del self._look_alikes[skeleton(name)]
            self._away.pop(name, None)
            self._changes += 1

    def names(self) -> list:
        return sorted(self._mailboxes)

    def share(self, name: str) -> None:
        pass  # (one server: its devices are one mailbox already)

    def set_away(self, name: str, message: str | None) -> None:
        if message is None:
            self._away.pop(name, None)
        else:
            self._away[name] = message
        self._changes += 1

    def away(self) -> dict[str, str]:
        return self._away
