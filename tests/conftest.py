import pytest

from chatroom.server import ChatServer

from .support import ClientProcess, Peer, ServerProcess


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
    peers = []

    def make():
        peer = Peer(server.address)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


@pytest.fixture
def server_process():
    """start(*args) -> a chatroom-server subprocess; all killed at the end."""
    started = []

    def start(*args, **kwargs):
        proc = ServerProcess(*args, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def client(server):
    """client(address=None) -> a chatroom-client subprocess on the in-process server."""
    started = []

    def start(address=None, *args):
        proc = ClientProcess(address or server.address, *args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
