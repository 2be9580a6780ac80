"""chatroom-bench's room scenario: clients in rooms of ``--room-size``, the first ``--senders``
of each room keeping WINDOW messages in flight to it; every member (the senders too) counts
what arrives. With --verify, besides lost, duplicated and reordered per sender and member:
``misordered``, ids a member saw in another order than another member of the same room (a
message under an id another member saw for a different one, or ids that go back).
"""

from .codec import encode
from .protocol import EXTENSION_VERSION, Hello, Login, Register
from .room_frames import Join


def rooms_of(clients: list, room_size: int) -> list[tuple[str, list]]:
    """(room name, its members) for consecutive groups of room_size clients."""
    return [
        (f"#bench{n}", clients[start : start + room_size]) for n, start in enumerate(range(0, len(clients), room_size))
    ]


def login_frames(client, room: str, register: bool) -> tuple[bytes, int]:
    """What a room client sends to log in and join, and how many answers that brings."""
    request = Register(client.name, "chatroom-bench") if register else Login(client.name)
    return encode(Hello(EXTENSION_VERSION)) + encode(request) + encode(Join(room)), 3


class RoomChecks:
    """The one-order check of a room scenario, shared by every member's reader."""

    def __init__(self):
        self.by_id: dict[tuple[str, int], str] = {}  # (room, id) -> the text first seen under it
        self.last_id: dict[tuple[str, str], int] = {}  # (room, member) -> the last id it saw
        self.misordered = 0

    def saw(self, member: str, message) -> None:
        key = (message.room, message.id)
        known = self.by_id.setdefault(key, message.text)
        if known != message.text:
            self.misordered += 1
        last = self.last_id.get((message.room, member), 0)
        if message.id <= last:
            self.misordered += 1
        self.last_id[(message.room, member)] = message.id
