"""One user's sessions on this server, as the one mailbox the directory holds for their name.

A client of version 4 logs in through a :class:`Devices`: the directory and the rooms hand
it every frame for the user, and it hands each frame to every session. A registered user may
log in again from another device while logged in (each with their password or a session
token): the new session joins the same Devices, never taking the name from the others. An
unregistered name stays one connection, as in the seed protocol.

In a cluster a user's devices may be logged in at several nodes: each node has its Devices,
and ``elsewhere`` (set by the directory for a name that may be shared) reaches the user's
devices on the other nodes: what one device did, their list, ending one of them.
"""

import time
from dataclasses import dataclass
from typing import Protocol

from ...device_frames import SessionEntry, SessionFlag
from ...protocol import DIRECT_MESSAGE, INCOMING
from ..connection.fanout import offer_devices_in_c, offer_each
from .directory import Mailbox, RoomSink

_FROM_SOMEONE = (INCOMING, DIRECT_MESSAGE)  # frames whose body begins with the sender's name field


class Elsewhere(Protocol):
    """A user's devices on the other nodes of a cluster, as one node reaches them."""

    others: bool  # whether other nodes hold the name now (else the methods have nobody to reach)

    def relay(self, frame: bytes) -> None:
        """Hand frame to each of them (what a device here did)."""

    def changed(self, devices: "Devices") -> None:
        """The devices here changed: the other nodes' listings must show them."""

    def sessions(self) -> list[SessionEntry]:
        """Their entries (empty when that cannot be known now)."""

    def end(self, number: int) -> bool:
        """End the one of that number; False if none of them has it."""


@dataclass(slots=True)
class _Device:
    number: int
    session: Mailbox
    since_ms: int


class Devices:
    """A Mailbox that hands what it is given to each of one user's sessions."""

    __slots__ = (
        "_devices",
        "_sinks",
        "_numbered",
        "contacts",
        "partners_known",
        "company",
        "company_at",
        "away",
        "elsewhere",
    )
    wants_ids = True  # (only clients of version 4 log in through one)

    def __init__(self, first: Mailbox):
        self._devices: list[_Device] = []
        self._sinks: list[RoomSink] = []  # the sessions' room sinks: a room's message goes to them in one call
        self._numbered = 0
        # For presence: the people the user has a conversation with (history, and who they
        # wrote to or heard from here), and, looked up now and then, those in their rooms.
        self.contacts: set[str] = set()
        self.partners_known = False  # the history's part of contacts is in
        self.company: frozenset[str] = frozenset()
        self.company_at = float("-inf")  # when company was looked up (monotonic)
        self.away = False
        self.elsewhere: Elsewhere | None = None
        self.add(first)

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def several(self) -> bool:
        """Whether the user has other sessions than one (here or on other nodes)."""
        return len(self._devices) > 1 or self._others() is not None

    @property
    def on_other_nodes(self) -> bool:
        """Whether the user has devices on other nodes of a cluster too."""
        return self._others() is not None

    def _others(self) -> Elsewhere | None:
        """The user's devices on other nodes, if there are any."""
        elsewhere = self.elsewhere
        return elsewhere if elsewhere is not None and elsewhere.others else None

    def count(self) -> int:
        """The user's sessions, here and on other nodes."""
        others = self._others()
        return len(self._devices) + (len(others.sessions()) if others is not None else 0)

    def number_from(self, base: int) -> None:
        """Number the sessions from base on (a node that joins a shared name numbers its own
        apart from the other nodes')."""
        self._numbered = base
        for device in self._devices:
            self._numbered += 1
            device.number = self._numbered

    def add(self, session: Mailbox) -> int:
        """A session logged in as the user; its number (never reused while the user is on)."""
        self._numbered += 1
        self._devices.append(_Device(self._numbered, session, int(time.time() * 1000)))
        self._sinks = [device.session.room_sink() for device in self._devices]
        if self.elsewhere is not None:
            self.elsewhere.changed(self)
        return self._numbered

    def remove(self, session: Mailbox) -> bool:
        """A session logged out; True if it was the last."""
        self._devices = [device for device in self._devices if device.session is not session]
        self._sinks = [device.session.room_sink() for device in self._devices]
        if self._devices and self.elsewhere is not None:
            self.elsewhere.changed(self)
        return not self._devices

    def listing(self, asking: Mailbox | None = None) -> tuple[SessionEntry, ...]:
        """The sessions (those on other nodes too), the asking one flagged."""
        here = [
            SessionEntry(
                device.number,
                SessionFlag.THIS if device.session is asking else SessionFlag(0),
                device.since_ms,
                getattr(device.session, "transport", ""),
                getattr(device.session, "peer", ""),
            )
            for device in self._devices
        ]
        others = self._others()
        if asking is None or others is None:
            return tuple(here)
        return tuple(sorted(here + others.sessions(), key=lambda entry: entry.number))

    def end_others(self, asking: Mailbox) -> None:
        """End every session but asking's, here and at other nodes (its password changed)."""
        for entry in self.listing(asking):
            if not entry.flags & SessionFlag.THIS:
                self.end(entry.number)

    def end(self, number: int) -> bool:
        """End the session of that number; False if there is none."""
        if self.end_here(number):
            return True
        others = self._others()
        return others is not None and others.end(number)

    def end_here(self, number: int) -> bool:
        """End the session of that number if it is on this server (another node may ask)."""
        for device in self._devices:
            if device.number == number:
                device.session.end_session()
                return True
        return False

    def to_others(self, session: Mailbox, frame: bytes) -> None:
        """Hand frame to the user's sessions but one (what that one did, shown on the others),
        never waiting: a session that stops reading is dropped, not waited for."""
        for device in self._devices:
            if device.session is not session:
                device.session.deliver(frame, wait=False)
        others = self._others()
        if others is not None:
            others.relay(frame)

    # --- Mailbox ------------------------------------------------------------------------

    def deliver(self, frame: bytes, wait: bool = True) -> bool:
        # (Someone wrote to the user: a conversation, for presence.)
        sender = str(frame[6 : 6 + frame[5]], "utf-8") if frame[0] in _FROM_SOMEONE else None
        return self.deliver_from(sender, frame, wait)

    def deliver_from(self, sender: str | None, frame: bytes, wait: bool = True) -> bool:
        """deliver, for whoever knows who wrote the message (the rules, for each relayed one):
        its sender's name is not read back from the frame (a sixth of the rules' work for an
        IRC client's message)."""
        if sender is not None:
            self.contacts.add(sender)
        took = False
        for device in self._devices:
            took = device.session.deliver(frame, wait) or took
        return took

    def offer(self, frame: bytes) -> bool:
        return offer_each(self._sinks, frame) > 0

    def room_sink(self) -> RoomSink:
        return self  # (its devices come and go: offer hands the frame to those of now)

    def disconnect(self) -> None:
        for device in list(self._devices):
            device.session.disconnect()

    def end_session(self) -> None:
        for device in list(self._devices):
            device.session.end_session()


offer_devices_in_c(Devices, vars(Devices)["_sinks"])  # (offer is offer_each over _sinks)
