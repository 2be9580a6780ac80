import pytest
from argon2 import PasswordHasher

from chatroom import testing
from chatroom.server import ChatServer
from chatroom.server.presence.directory import LocalDirectory
from chatroom.server.storage.accounts import Accounts
from chatroom.server.storage.sqlite_store import SQLiteStore
from chatroom.testing import ClientProcess, Peer, ServerProcess
from tests.terminals import COLS, Terminal

# Hashing as the server does it, only cheaper: the rules' tests are about the rules.
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

# Fixtures that start processes: a test that uses one is a "process" test.
_PROCESS_FIXTURES = {"server_process", "client", "terminal", "redis_server", "nodes"}


def pytest_collection_modifyitems(items):
    for item in items:
        if _PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)


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
def peer_at():
    """peer_at(address) -> a new Peer connected to address; all closed at the end."""
    started = _Started(Peer, Peer.close)
    yield started
    started.end_all()


@pytest.fixture
def connect(server, peer_at):
    """connect() -> a new Peer on the in-process server; all closed at the end."""
    return lambda: peer_at(server.address)


@pytest.fixture
def logged_in():
    """logged_in(address, name) -> a new Peer logged in as name; all closed at the end."""
    started = _Started(testing.logged_in, Peer.close)
    yield started
    started.end_all()


@pytest.fixture
def fake_server():
    """fake_server(handler) -> a started StreamServer running handler(sock) per connection;
    all stopped at the end."""
    started = _Started(testing.fake_server, lambda server: server.stop(timeout=testing.WAIT))
    yield started
    started.end_all()


@pytest.fixture
def terminal(server, tmp_path):
    started = []

    def start(address=None, *args, cols=COLS):
        term = Terminal(address or server.address, tmp_path, *args, cols=cols)
        started.append(term)
        term.wait_for_input_line("> ")
        return term

    yield start
    for term in started:
        term.close()


@pytest.fixture
def accounts_server(server_process, tmp_path):
    return server_process(data_dir=tmp_path / "data")


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
    started = _Started(
        lambda address=None, *args, **kwargs: ClientProcess(address or server.address, *args, **kwargs),
        ClientProcess.stop,
    )
    yield started
    started.end_all()


# --- The rules without sockets: the in-process directory, an in-memory store ---------------


@pytest.fixture
def directory():
    directory = LocalDirectory()
    directory.start()
    return directory


@pytest.fixture
def accounts():
    accounts = Accounts(SQLiteStore(":memory:"), hasher=CHEAP)
    accounts.start()
    yield accounts
    accounts.stop()
