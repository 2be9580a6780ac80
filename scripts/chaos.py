"""A self-checking chaos run: three chatroom-server nodes on one Redis, relaying, talking in a
room and keeping messages while a node is paused past its TTL, another is killed and started
again, and Redis restarts; then the invariants are checked.

Invariants, at the end:
- no name is held twice: every node lists the same users, and each name at most once;
- nothing answered OK is lost, between connections that lived through the run: each receiver
  got every message acknowledged to its sender;
- nothing is delivered twice or out of order: each receiver sees each sender's numbers rising;
- a room has one order: every member gets every message answered OK, once, in the order of
  the room's ids, and two members never see one id carry different messages;
- nothing answered STORED is lost: registered users who were away get all of it at login.

Run by ./scripts/reliability (its figures go in docs/reliability.md), or alone:
``python scripts/chaos.py``. Loopback only; every wait is bounded.
"""

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import gevent

from chatroom.protocol import Authenticate, Hello, Incoming, ListUsers, Login, Response, SendTo, Status
from chatroom.room_frames import Join, RoomMessage
from chatroom.testing import OK, Peer, RedisProcess, ServerProcess, extended

TTL = 2
PAIRS = 24  # relaying pairs, each across two nodes: 0 and 1 (they live through it), or 0 and 2
AWAY = 4  # registered users who stay away, their messages kept
WINDOW = 8
STORED = Response(Status.STORED)
ROOM = "#chaos"


class Relay:
    """One sender and one receiver on different nodes, numbers going one way, checked."""

    def __init__(self, number, sender_node, receiver_node):
        self.sender_name, self.receiver_name = f"s{number}", f"r{number}"
        self.sender, self.receiver = Peer(sender_node.address), Peer(receiver_node.address)
        self.sender.login(self.sender_name)
        self.receiver.login(self.receiver_name)
        self.sender.sock.settimeout(30)  # (a node paused, Redis away: answers come late)
        self.receiver.sock.settimeout(None)  # a receiver may wait as long as it takes
        self.acknowledged_numbers: list[int] = []  # the numbers answered OK
        self.refused = 0
        self.received: list[int] = []
        self.broken = False  # a connection of the pair was lost (its node was killed)

    def run(self, until: float):
        greenlets = [gevent.spawn(self._send, until), gevent.spawn(self._receive)]
        return greenlets

    def _send(self, until):
        sent = 0
        try:
            while time.monotonic() < until:
                self.sender.send(*[SendTo(self.receiver_name, str(sent + i)) for i in range(WINDOW)])
                for i in range(WINDOW):
                    if self.sender.next_event() == OK:
                        self.acknowledged_numbers.append(sent + i)
                    else:
                        self.refused += 1
                sent += WINDOW
        except (OSError, AssertionError, gevent.Timeout):
            self.broken = True

    def _receive(self):
        try:
            while True:
                try:
                    event = self.receiver.next_event()
                except gevent.Timeout:
                    continue  # quiet for a while (its sender's node paused, say)
                if isinstance(event, Incoming):
                    self.received.append(int(event.text))
        except (OSError, AssertionError):
            self.broken = True


class RoomTalk:
    """Posters and listeners in one room, on nodes 0 and 1; what each listener got, checked."""

    def __init__(self, nodes):
        self.posters = {f"p{n}": self._member(nodes[n % 2], f"p{n}") for n in range(4)}
        self.listeners = {f"l{n}": self._member(nodes[n], f"l{n}") for n in range(2)}
        self.acknowledged: dict[str, list[int]] = {name: [] for name in self.posters}
        self.refused = 0
        self.received: dict[str, list[tuple[int, str]]] = {name: [] for name in self.listeners}  # (id, text)
        self.broken: set[str] = set()

    @staticmethod
    def _member(node, name) -> Peer:
        peer = Peer(node.address)
        assert peer.reply(Hello(3)) == OK and peer.reply(Login(name)) == OK and peer.reply(Join(ROOM)) == OK
        peer.sock.settimeout(30)  # (a node paused, Redis away: answers come late)
        return peer

    def run(self, until: float) -> list:
        posting = [gevent.spawn(self._post, name, until) for name in self.posters]
        return posting + [gevent.spawn(self._listen, name) for name in self.listeners]

    def close(self) -> None:
        for peer in [*self.posters.values(), *self.listeners.values()]:
            peer.close()

    def _post(self, name, until):
        peer, number = self.posters[name], 0
        try:
            while time.monotonic() < until:
                if peer.reply(SendTo(ROOM, f"{name} {number}")) == OK:
                    self.acknowledged[name].append(number)
                else:
                    self.refused += 1
                peer.pushed.clear()  # (its own messages, and the others')
                number += 1
        except (OSError, AssertionError, gevent.Timeout):
            self.broken.add(name)

    def _listen(self, name):
        peer = self.listeners[name]
        try:
            while True:
                try:
                    event = peer.next_push()
                except gevent.Timeout:
                    continue
                if isinstance(event, RoomMessage):
                    self.received[name].append((event.id, event.text))
        except (OSError, AssertionError):
            self.broken.add(name)

    def check(self) -> dict:
        """Lost (answered OK, missing at a listener that lived), twice, out of order, and ids
        that carried different messages at two listeners."""
        said = {f"{name} {n}" for name, numbers in self.acknowledged.items() for n in numbers}
        lost = twice = disorder = 0
        for name, got in self.received.items():
            ids = [message_id for message_id, _ in got]
            twice += len(ids) - len(set(ids))
            disorder += sum(1 for a, b in zip(ids, ids[1:], strict=False) if b <= a)
            if name not in self.broken:
                lost += len(said - {text for _, text in got})
        first, second = (dict(got) for got in self.received.values())
        differ = sum(1 for message_id in first.keys() & second.keys() if first[message_id] != second[message_id])
        return {
            "room_acknowledged": len(said),
            "room_refused": self.refused,
            "room_whole": len(self.listeners) - len(self.broken & set(self.listeners)),
            "room_lost": lost,
            "room_twice": twice,
            "room_disorder": disorder,
            "room_differ": differ,
        }


def run(folder: Path, seconds: float = 20.0) -> dict:
    redis = RedisProcess(folder, persistent=True)  # what it acknowledged survives its restart
    url = f"redis://127.0.0.1:{redis.port}/0"
    args = ("--log-level", "WARNING", "--redis", url, "--node-ttl", str(TTL))
    nodes = [ServerProcess(*args) for _ in range(3)]
    relays, away_stored, greenlets = [], {f"away{i}": [] for i in range(AWAY)}, []
    room = None
    try:
        for name in away_stored:
            extended(nodes[0].address, name).close()
        ends = [(0, 1), (1, 0), (0, 2), (2, 0)]
        for number in range(PAIRS):
            sender, receiver = ends[number % len(ends)]
            relays.append(Relay(number, nodes[sender], nodes[receiver]))
        room = RoomTalk(nodes)
        until = time.monotonic() + seconds
        for relay in relays:
            greenlets += relay.run(until)
        greenlets += room.run(until)
        greenlets.append(gevent.spawn(_keep_for_the_away, nodes[1].address, away_stored, until))
        events = _cause_trouble(nodes, redis, seconds, args)
        gevent.sleep(max(0.0, until - time.monotonic()) + 2.0)  # the last messages arrive
        return _check(nodes, relays, away_stored, events) | room.check()
    finally:
        gevent.killall(greenlets)
        for relay in relays:
            relay.sender.close()
            relay.receiver.close()
        if room is not None:
            room.close()
        for node in nodes:
            node.terminate()
        redis.stop()


def _keep_for_the_away(address, away_stored, until):
    peer = Peer(address)
    try:
        assert peer.request(Hello(1)) == OK
        peer.login("keeper")
        number = 0
        while time.monotonic() < until:
            for name, kept in away_stored.items():
                if peer.request(SendTo(name, f"{number}")) == STORED:
                    kept.append(str(number))
                number += 1
            gevent.sleep(0.01)
    except (OSError, AssertionError):
        pass
    finally:
        peer.close()


def _cause_trouble(nodes, redis, seconds, args) -> list[str]:
    """Pause node 0 past its TTL, kill node 2 and start it again, restart Redis (those named
    in $CHAOS, if set: pause, kill, redis)."""
    events = []
    chosen = os.environ.get("CHAOS", "pause,kill,redis").split(",")
    gevent.sleep(seconds * 0.15)
    if "pause" in chosen:
        _pause(nodes[0], events)
    gevent.sleep(seconds * 0.15)
    if "kill" in chosen:
        _kill_and_restart(nodes, args, events)
    gevent.sleep(seconds * 0.15)
    if "redis" in chosen:
        redis.stop()
        redis.start()
        events.append("Redis restarted (with its append-only file)")
    return events


def _pause(node, events):
    node.proc.send_signal(signal.SIGSTOP)
    gevent.sleep(TTL + 1.0)
    node.proc.send_signal(signal.SIGCONT)
    events.append(f"node 0 paused {TTL + 1:g} s (past its {TTL} s TTL)")


def _kill_and_restart(nodes, args, events):
    nodes[2].proc.kill()
    nodes[2].proc.wait()
    nodes[2] = ServerProcess(*args)  # (a new port: its old clients are gone, as after a crash)
    events.append("node 2 killed (SIGKILL) and started again")


def _check(nodes, relays, away_stored, events) -> dict:
    whole = [relay for relay in relays if not relay.broken]
    lost = sum(len(set(relay.acknowledged_numbers) - set(relay.received)) for relay in whole)
    twice = sum(len(relay.received) - len(set(relay.received)) for relay in relays)
    disorder = sum(
        sum(1 for a, b in zip(relay.received, relay.received[1:], strict=False) if b <= a) for relay in relays
    )
    listings = []
    for node in nodes[:2]:
        peer = Peer(node.address)
        listings.append(peer.request(ListUsers()).names)
        peer.close()
    held_twice = sum(len(names) - len(set(names)) for names in listings)
    stored_lost = 0
    for name, kept in away_stored.items():
        peer = Peer(nodes[0].address)
        assert peer.request(Hello(1)) == OK
        peer.send(Authenticate(name, "pw"))
        texts = []
        if peer.next_event() == OK:
            with gevent.Timeout(2.0, False):
                while True:
                    texts.append(peer.next_event().text)
        stored_lost += len(set(kept) - set(texts))
        peer.close()
    return {
        "events": events,
        "pairs": len(relays),
        "whole_pairs": len(whole),
        "acknowledged": sum(len(relay.acknowledged_numbers) for relay in relays),
        "refused": sum(relay.refused for relay in relays),
        "lost": lost,
        "twice": twice,
        "disorder": disorder,
        "listings_agree": listings[0] == listings[1],
        "held_twice": held_twice,
        "stored": sum(len(kept) for kept in away_stored.values()),
        "stored_lost": stored_lost,
    }


def section(outcome: dict) -> list[str]:
    ok = (
        outcome["lost"] == 0
        and outcome["twice"] == 0
        and outcome["disorder"] == 0
        and outcome["listings_agree"]
        and outcome["held_twice"] == 0
        and outcome["stored_lost"] == 0
        and outcome["room_lost"] == outcome["room_twice"] == outcome["room_disorder"] == outcome["room_differ"] == 0
    )
    return [
        f"Chaos: three nodes on one Redis, {outcome['pairs']} pairs relaying across them, four members "
        f"posting in a room that two others listen to, registered users away with messages kept for them; "
        f"meanwhile {'; '.join(outcome['events'])}. "
        f"Invariants {'held' if ok else 'BROKEN'}.",
        "",
        "| | figure |",
        "|---|---|",
        f"| messages answered OK / FAILURE | {outcome['acknowledged']} / {outcome['refused']} |",
        f"| pairs whose connections lived through it | {outcome['whole_pairs']} of {outcome['pairs']} |",
        f"| answered OK but lost, between those | {outcome['lost']} |",
        f"| delivered twice / out of order | {outcome['twice']} / {outcome['disorder']} |",
        f"| names held twice / nodes listing alike | {outcome['held_twice']} / "
        f"{'yes' if outcome['listings_agree'] else 'NO'} |",
        f"| answered STORED / lost | {outcome['stored']} / {outcome['stored_lost']} |",
        f"| room messages answered OK / FAILURE | {outcome['room_acknowledged']} / {outcome['room_refused']} |",
        f"| room listeners whose connections lived through it | {outcome['room_whole']} of 2 |",
        f"| room messages answered OK but lost at a listener | {outcome['room_lost']} |",
        f"| room messages twice / out of order / one id, two messages | {outcome['room_twice']} / "
        f"{outcome['room_disorder']} / {outcome['room_differ']} |",
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        result = run(Path(folder))
    print("\n".join(section(result)))
    sys.exit(0 if "held" in section(result)[0] else 1)
