import os
import shutil

import pytest
from argon2 import PasswordHasher

from chatroom import testing
from chatroom.server import ChatServer
from chatroom.server.presence.directory import LocalDirectory
from chatroom.server.storage.accounts import Accounts
from chatroom.server.storage.sqlite_store import SQLiteStore
from chatroom.testing import WAIT, ClientProcess, IrcPeer, Peer, ServerProcess, free_port
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
def server_with(server_process):
    """server_with("--web", "--irc"...) -> a chatroom-server process that also serves each of
    these on a free port of its own, ready (web_url, web_address; irc_address, irc_port)."""

    def start(*options):
        ports = {option: free_port() for option in options}
        server = server_process(*(word for option, port in ports.items() for word in (option, f"127.0.0.1:{port}")))
        if "--web" in ports:
            port = ports["--web"]
            server.wait_for_log(f"Web client on http://127.0.0.1:{port}/")
            server.web_url, server.web_address = f"http://127.0.0.1:{port}/", ("127.0.0.1", port)
        if "--irc" in ports:
            port = ports["--irc"]
            server.wait_for_log(f"IRC on 127.0.0.1:{port}")
            server.irc_address, server.irc_port = ("127.0.0.1", port), port
        return server

    return start


@pytest.fixture
def web_server(server_with):
    return server_with("--web")


@pytest.fixture
def irc_server(server_with):
    return server_with("--irc")


@pytest.fixture
def irc(irc_server):
    """irc() -> a raw IRC client connected to irc_server's IRC port; all closed at the end."""
    made = []

    def connect():
        made.append(IrcPeer(irc_server.irc_address))
        return made[-1]

    yield connect
    for peer in made:
        peer.close()


@pytest.fixture
def browser():
    """A headless chromium; nothing is downloaded (SE_OFFLINE), the driver is Debian's."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path, chromium = shutil.which("chromedriver"), shutil.which("chromium")
    if not driver_path or not chromium:
        pytest.fail("chromium and chromium-driver are needed: ./scripts/test installs them")  # never a skip
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,640"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(WAIT * 3)
    yield driver
    driver.quit()


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


@pytest.fixture
def rooms(accounts):
    from chatroom.server.rooms.registry import Rooms

    rooms = Rooms(accounts.store)
    rooms.start()
    return rooms


@pytest.fixture
def hello_client(directory, accounts, rooms):
    """hello_client(name=None, version=3, register=False, peer=...) -> the rules of a new
    connection that said HELLO (and logged in as name, or registered it), without sockets."""
    from chatroom.protocol import Hello, Login, Register, Response, Status
    from tests.test_rules import Client

    def connect(name=None, version=3, register=False, peer="127.0.0.1:40000"):
        client = Client(directory, accounts, peer, rooms=rooms)
        assert client.ask(Hello(version)) == [Response(Status.OK)]
        if name is not None:
            request = Register(name, "secret") if register else Login(name)
            assert client.ask(request) == [Response(Status.OK)]
        return client

    return connect
