"""The greenlets that serve sessions in turn (connection/servers.py): a greenlet whose work
ended serves the next wake, as many rest as the cap allows, and none keeps its work alive."""

import gc
import weakref

import gevent
import pytest
from gevent.event import Event
from greenlet import getcurrent

from chatroom.protocol import ListUsers, UserList
from chatroom.server.connection import servers
from chatroom.server.connection.session import Session
from chatroom.testing import WAIT, eventually


@pytest.fixture(autouse=True)
def no_resting_greenlets():
    """Each test starts with no greenlet resting (another test's may be there)."""
    servers._resting.clear()
    yield
    servers._resting.clear()


def served(work) -> None:
    """Serve work as the hub does (serve() runs in the hub, at a watcher's callback), and
    wait for it to have started."""
    started = Event()

    def starting():
        started.set()
        work()

    gevent.get_hub().loop.run_callback(servers.serve, starting)
    assert started.wait(WAIT)


def test_a_greenlet_that_served_one_wake_serves_the_next():
    seen = []
    served(lambda: seen.append(getcurrent()))
    served(lambda: seen.append(getcurrent()))
    assert len(seen) == 2 and seen[0] is seen[1]
    assert servers._resting == [seen[0]]


class _Held:
    """Work that notes the greenlet serving it, then waits until go_on is set."""

    def __init__(self):
        self.go_on = Event()
        self.seen = []

    def __call__(self):
        self.seen.append(getcurrent())
        self.go_on.wait(WAIT)


def test_wakes_served_at_once_each_have_a_greenlet_and_all_rest_afterwards():
    held = _Held()
    served(held)
    served(held)
    seen = held.seen
    assert seen[0] is not seen[1]
    held.go_on.set()
    eventually(lambda: len(servers._resting) == 2, timeout=WAIT)
    served(lambda: seen.append(getcurrent()))
    assert seen[2] is seen[1]  # the one that rested last


def test_resting_greenlets_are_capped():
    held = _Held()
    for _ in range(servers.MAX_RESTING + 5):
        served(held)
    held.go_on.set()
    # Every greenlet done with its work: resting, or ended for want of a place.
    eventually(lambda: all(g.dead or g in servers._resting for g in held.seen), timeout=WAIT)
    assert len(servers._resting) == servers.MAX_RESTING
    assert sum(g.dead for g in held.seen) == 5


def test_a_resting_greenlet_keeps_nothing_of_what_it_served():
    class Work:
        def run(self):
            pass

    work = Work()
    gone = weakref.ref(work)
    served(work.run)
    del work
    gc.collect()
    assert gone() is None


def test_a_parked_connection_wakes_in_the_greenlet_it_gave_up(server, connect, monkeypatch):
    """Over a socket: the client's next request after its session parked is served by the
    greenlet that served its login (a new greenlet costs a fresh 16 KB of frame memory)."""
    alice = connect()
    alice.login("alice")
    (session,) = server._sessions
    eventually(lambda: session.parked, timeout=WAIT, what="the session parked")
    assert len(servers._resting) == 1
    (rested,) = servers._resting
    seen = []
    original = Session._serve_batch

    def noting(self, data):
        seen.append(getcurrent())
        return original(self, data)

    monkeypatch.setattr(Session, "_serve_batch", noting)
    assert alice.request(ListUsers()) == UserList(("alice",))
    assert seen == [rested]
