"""A shared name's devices at the other nodes of a cluster, as one node reaches them.

Each node holding a shared name (a registered user's devices, which may log in at several
nodes, see scripts._CLAIM) keeps its own devices' entries in the name's sessions hash (a
field per node, a SESSION-LIST frame), so that any node lists and counts them all. What a device does reaches the
user's devices at the other nodes through their inboxes (the recipient that skips the
sender's node), and so does a request to end one of them: an END-SESSION frame, which the
node with a session of that number acts on. A node that joins a shared name numbers its
devices from a base of its own (the claim's answer), so that numbers never clash.
"""

import logging

import gevent

from ....codec import Decoder, encode
from ....device_frames import EndSession, SessionEntry, SessionList
from ..devices import Devices
from ..directory import DirectoryUnavailable
from .handing import to_devices_elsewhere

log = logging.getLogger(__name__)

NUMBERS_PER_NODE = 1_000_000  # a node's devices of a shared name are numbered base * this + 1, + 2...


class SharedDevices:
    """The :class:`~..devices.Elsewhere` of a name this node shares with other nodes."""

    __slots__ = ("_name", "_recipient", "_directory", "others")

    def __init__(self, name: str, directory):
        self.others = False
        self._name = name
        self._recipient = to_devices_elsewhere(name)
        self._directory = directory  # the RedisDirectory: its courier, scripts and calls

    def relay(self, frame: bytes) -> None:
        self._directory.courier.send_later(self._recipient, frame)

    def changed(self, devices: Devices) -> None:
        # (Not on the caller's way: a login or logout never waits for the listing.)
        gevent.spawn(self._write, encode(SessionList(devices.listing())))

    def _write(self, listing: bytes) -> None:
        directory = self._directory
        try:
            directory.redis_call(directory.redis.hset, directory.sessions_key + self._name, directory.node_id, listing)
        except DirectoryUnavailable:
            pass  # Redis is away: the next change writes it again

    def sessions(self) -> list[SessionEntry]:
        directory = self._directory
        try:
            listings = directory.redis_call(directory.scripts.sessions, self._name, directory.node_id)
        except DirectoryUnavailable:
            return []
        decoder = Decoder.for_client()
        return [entry for listing in listings for event in decoder.receive_data(listing) for entry in event.sessions]

    def end(self, number: int) -> bool:
        if not any(entry.number == number for entry in self.sessions()):
            return False
        self.relay(encode(EndSession(number)))
        return True
