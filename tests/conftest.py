import pytest

from chatroom.server import ChatServer

from .support import ClientProcess, Peer, ServerProcess


class _Started:
    """A factory fixture's helper: makes things, and ends them all when the test ends."""

    def __init__(self, make, end):
        self._make = make
        self._end = end
        self._made = []

    def __call__(self, *args, **kwargs):
        thing = self._make(*args, **kwargs)
        self._made.append(thing)
        return thing

    def end_all(self):
        for thing in self._made:
            self._end(thing)


@pytest.fixture
def server():
    """An in-process server on 127.0.0.1, any free port."""
    chat = ChatServer("127.0.0.1", 0)
    chat.start()
    yield chat
    chat.stop()


@pytest.fixture
def connect(server):
    """connect() -> a new Peer on the in-process server; all closed at the end."""
    started = _Started(lambda: Peer(server.address), Peer.close)
    yield started
    started.end_all()


@pytest.fixture
def server_process():
    """server_process(*args) -> a chatroom-server subprocess; all killed at the end."""
    started = _Started(ServerProcess, ServerProcess.stop)
    yield started
    started.end_all()


@pytest.fixture
def client(server):
    """client(address=None, *args) -> a chatroom-client subprocess, by default on the
    in-process server; all killed at the end."""
    started = _Started(lambda address=None, *args: ClientProcess(address or server.address, *args), ClientProcess.stop)
    yield started
    started.end_all()
