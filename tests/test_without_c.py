"""The server on a machine without a C compiler: none of the compiled modules can be imported,
so the Python they stand in for runs alone. A real server process, over real sockets: the
seed protocol, a registered user's history, a room, and the IRC port, all through the Python
paths that the unit tests of each compiled module compare them with."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chatroom.protocol import HistoryRequest, Incoming, ListUsers, Login, SendTo, UserList
from chatroom.room_frames import Join, RoomMessage
from chatroom.testing import OK, assert_clean_log, free_port, hello_peer
from chatroom.testing.irc_peers import IrcPeer
from chatroom.testing.peers import Peer

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parent.parent


def compiled_modules() -> set[str]:
    """The dotted name of every module built from a .c file of the package."""
    return {".".join(path.relative_to(ROOT).with_suffix("").parts) for path in (ROOT / "chatroom").rglob("*.c")}


@pytest.fixture
def without_c(tmp_path, monkeypatch):
    """PYTHONPATH for a process in which no compiled module can be imported (a sitecustomize
    refuses them, as an install without a compiler has none)."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            class _NoCompiledModules:
                def find_spec(self, name, path=None, target=None):
                    if name in {sorted(compiled_modules())!r}:
                        raise ImportError(name + ": not built (no compiler)")
                    return None

            sys.meta_path.insert(0, _NoCompiledModules())
            """
        )
    )
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{ROOT}")


def test_the_compiled_modules_are_found_to_block():
    assert {"chatroom._frames", "chatroom.server.connection._relay", "chatroom.server.irc._speedups"} <= (
        compiled_modules()
    )


def test_the_server_serves_every_kind_of_client_with_the_python_alone(without_c, server_process):
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import chatroom.server.connection.relay as r, chatroom.codec as c; print(r.compiled, c.compiled)",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.stdout.split() == ["None", "None"], check.stderr
    irc_port = free_port()
    server = server_process("--irc", f"127.0.0.1:{irc_port}")
    server.wait_for_log(f"IRC on 127.0.0.1:{irc_port}")
    # The seed protocol, byte for byte as ever.
    alice, bob = Peer(server.address), Peer(server.address)
    assert alice.reply(Login("alice")) == OK and bob.reply(Login("bob")) == OK
    assert alice.reply(SendTo("bob", "hi")) == OK
    assert bob.next_push() == Incoming("alice", "hi")
    assert alice.request(ListUsers()) == UserList(("alice", "bob"))
    # Registered users: the history keeps what they say.
    carol, dave = hello_peer(server.address, 3, "carol", "pw"), hello_peer(server.address, 3, "dave", "pw")
    for text in ("one", "two"):
        assert carol.reply(SendTo("dave", text)) == OK
    page = carol.request(HistoryRequest("dave", 10))
    assert [entry.text for entry in page.entries] == ["one", "two"]
    # A room: every member has the message, the sender too.
    assert carol.reply(Join("#r")) == OK and dave.reply(Join("#r")) == OK
    assert carol.reply(SendTo("#r", "to the room")) == OK
    for member in (carol, dave):
        (message,) = member.pushes_of(RoomMessage, 1)
        assert (message.sender, message.text) == ("carol", "to the room")
    # The IRC port: a PRIVMSG each way.
    irc = IrcPeer(("127.0.0.1", irc_port))
    irc.register("erin")
    irc.send("PRIVMSG alice :from irc")
    assert alice.next_push() == Incoming("erin", "from irc")
    assert alice.reply(SendTo("erin", "to irc")) == OK
    assert any(line.endswith("PRIVMSG erin :to irc") for line in irc.until("PRIVMSG"))
    for peer in (alice, bob, carol, dave, irc):
        peer.close()
    assert_clean_log(server.log_text())
