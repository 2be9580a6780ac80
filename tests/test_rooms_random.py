"""Rooms under random requests from registered users and guests, who come and go, register,
and act on each other: a room with a registered member has one owner, a registered one, and a
restart keeps what is registered. (tests/test_cluster.py has two nodes under the same
requests tell the same rooms.)"""

import random

import pytest

from chatroom.protocol import Authenticate, Hello, Login, Logout, Reason, Register, Response
from chatroom.room_frames import (
    GiveRoom,
    Invite,
    Join,
    Kick,
    ListMembers,
    MemberFlag,
    MemberList,
    Part,
    SetInviteOnly,
    SetTopic,
)
from chatroom.testing import OK, Peer, eventually

pytestmark = pytest.mark.process

USERS = ["ra", "rb", "rc", "ga", "gb", "gc"]  # r*: registered from the start; g*: guests
ROOMS = ["#x", "#y", "#z"]
STEPS = 300


ROOM_ACTIONS = ("join", "part", "kick", "invite", "give", "invite-only", "topic")


def room_request(action: str, room: str, other: str, rng, step: int):
    """The request of one of ROOM_ACTIONS: about room, and other (a name) where it takes one."""
    return {
        "join": Join(room),
        "part": Part(room),
        "kick": Kick(room, other),
        "invite": Invite(room, other),
        "give": GiveRoom(room, other),
        "invite-only": SetInviteOnly(room, rng.random() < 0.5),
        "topic": SetTopic(room, f"topic {step}"),
    }[action]


class Users:
    """The users' connections, spread over the servers' addresses, and who is registered."""

    def __init__(self, addresses):
        self.addresses = addresses
        self.registered = {user for user in USERS if user.startswith("r")}
        self.peers = {user: self.connect(user, addresses[n % len(addresses)]) for n, user in enumerate(USERS)}

    def connect(self, user, address) -> Peer:
        peer = Peer(address)
        assert peer.reply(Hello(4)) == OK
        if user in self.registered:
            if peer.reply(Authenticate(user, "pw")) != OK:
                assert peer.reply(Register(user, "pw")) == OK
            return peer

        def logged_in() -> bool:
            reply = peer.reply(Login(user))
            assert reply == OK or reply.reason is Reason.NAME_IN_USE, reply
            return reply == OK

        eventually(logged_in, interval=0.05, what=f"{user}'s name free again (its last connection ended)")
        return peer

    def play(self, seed: int) -> None:
        """STEPS random requests, the same for a seed."""
        rng = random.Random(seed)
        for step in range(STEPS):
            self._act(rng, step)

    def _act(self, rng, step) -> None:
        user, room, other = rng.choice(USERS), rng.choice(ROOMS), rng.choice(USERS)
        peer = self.peers[user]
        action = rng.choice(
            ["join"] * 4 + ["part", "kick", "invite", "give", "invite-only", "topic", "again", "register"]
        )
        if action == "again":  # logged out, or just gone; back at either server
            if rng.random() < 0.5:
                peer.reply(Logout())
            peer.close()
            self.peers[user] = self.connect(user, rng.choice(self.addresses))
        elif action == "register":
            if user not in self.registered and peer.reply(Register(user, "pw")) == OK:
                self.registered.add(user)
        else:
            assert isinstance(peer.reply(room_request(action, room, other, rng, step)), Response)

    def close(self) -> None:
        for peer in self.peers.values():
            peer.close()


def rooms_seen_from(address) -> dict:
    """Each room's (topic, members with whether they own it), or what MEMBERS answered
    instead, to an outsider."""
    outsider = Peer(address)
    assert outsider.reply(Hello(4)) == OK and outsider.reply(Login(f"out{address[1]}")) == OK
    seen = {}
    for room in ROOMS:
        members = outsider.reply(ListMembers(room))
        if isinstance(members, MemberList):
            owned = tuple(sorted((name, bool(flags & MemberFlag.OWNER)) for name, flags in members.members))
            seen[room] = (members.topic, owned)
        else:
            seen[room] = members.reason
    outsider.close()
    return seen


def assert_owned_as_it_must_be(seen: dict, registered: set) -> None:
    for room, view in seen.items():
        if isinstance(view, tuple):
            owners = [name for name, owns in view[1] if owns]
            assert len(owners) <= 1 and set(owners) <= registered, (room, view)
            if any(name in registered for name, _ in view[1]):
                assert owners, (room, view, "a registered member, and no owner")


def assert_clean(*servers) -> None:
    for server in servers:
        assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("seed", [2, 3])
def test_a_restart_keeps_the_registered_members_owner_and_topic(server_process, tmp_path, seed):
    server = server_process(data_dir=tmp_path)
    users = Users([server.address])
    users.play(seed)
    before = rooms_seen_from(server.address)
    assert_owned_as_it_must_be(before, users.registered)
    users.close()
    assert_clean(server)
    server.terminate()
    again = server_process(data_dir=tmp_path)
    after = rooms_seen_from(again.address)
    for room, view in before.items():
        kept = tuple(member for member in view[1] if member[0] in users.registered) if isinstance(view, tuple) else ()
        # (A room of guests alone is gone; one that was invite-only is no outsider's either way.)
        expected = (view[0], kept) if kept else Reason.NO_SUCH_ROOM
        assert after[room] == expected, (room, view)
    assert_clean(again)
