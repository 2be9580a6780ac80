"""Real IRC clients from Debian on the IRC port: WeeChat (headless) and irssi log in (to a
registered name), join a room and exchange messages both ways with native clients and with a
browser user."""

import os
import subprocess
from pathlib import Path

import pytest

from chatroom.protocol import DirectMessage, Logout, SendTo
from chatroom.room_frames import Join, RoomMessage
from chatroom.testing import OK, WAIT, Peer, hello_peer
from chatroom.testing.waiting import eventually
from tests.browsers import click, log_in, text_of, type_into, until

pytestmark = pytest.mark.process


def native(address, name, *rooms, password=None) -> Peer:
    peer = hello_peer(address, 4, name, password)
    for room in rooms:
        assert peer.reply(Join(room)) == OK
    return peer


def log_of(folder: Path, buffer: str) -> str:
    log = folder / "logs" / f"irc.chat.{buffer}.weechatlog"
    return log.read_text(errors="replace") if log.exists() else ""


@pytest.fixture
def irc_and_web(server_with):
    """A server with its IRC port and its web client."""
    return server_with("--irc", "--web")


def test_weechat_logs_in_to_a_registered_name_by_sasl_joins_a_room_and_talks_both_ways(irc_and_web, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    irc_server = irc_and_web
    log_in(browser, irc_server.web_url, "carol")  # a browser user
    owner = native(irc_server.address, "alice", password="s3cret")
    owner.close()
    bob = native(irc_server.address, "bob", "#team")
    commands = [
        "/set logger.file.flush_delay 0",  # (what it shows reaches its logs at once)
        f"/server add chat 127.0.0.1/{irc_server.irc_port}",
        "/set irc.server.chat.nicks alice",
        "/set irc.server.chat.sasl_username alice",  # (SASL PLAIN, and every capability it takes: as users connect)
        "/set irc.server.chat.sasl_password s3cret",
        "/set irc.server.chat.autojoin #team",
        "/connect chat",
        "/wait 2 /msg -server chat bob hello from weechat",
        "/wait 2 /msg -server chat #team hello team from weechat",
        "/wait 2 /msg -server chat carol hello browser from weechat",
    ]
    weechat = subprocess.Popen(
        ["weechat-headless", "--dir", str(tmp_path), "--run", ";".join(commands)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        [hello] = bob.pushes_of(DirectMessage, 1)  # (alice's joining the room is passed over)
        assert (hello.sender, hello.text) == ("alice", "hello from weechat")
        assert bob.reply(SendTo("alice", "hello weechat")) == OK
        assert bob.reply(SendTo("#team", "hello room")) == OK
        eventually(lambda: "hello weechat" in log_of(tmp_path, "bob"), timeout=WAIT * 2, what="bob's message")
        eventually(lambda: "hello room" in log_of(tmp_path, "#team"), timeout=WAIT * 2, what="the room's")
        said = [m for m in bob.pushes_of(RoomMessage, 2) if m.sender == "alice"]
        assert [m.text for m in said] == ["hello team from weechat"]
        # The browser user and the WeeChat user, both ways.
        click(browser, '.user[data-name="alice"]')
        until(browser, lambda d: "hello browser from weechat" in text_of(d, "messages"), "weechat's message")
        type_into(browser, "text", "hello weechat from the browser", Keys.ENTER)
        eventually(
            lambda: "hello weechat from the browser" in log_of(tmp_path, "carol"), timeout=WAIT * 2, what="carol's"
        )
    except BaseException:
        for log in sorted((tmp_path / "logs").glob("*")):
            print(log.name, log.read_text(errors="replace")[-800:])
        raise
    finally:
        weechat.terminate()
        weechat.wait(WAIT)
        bob.close()


def test_the_clients_are_there():
    for program in ("weechat-headless", "irssi"):
        assert any(Path(d, program).exists() for d in os.environ["PATH"].split(os.pathsep)), program


def test_irssi_logs_in_to_a_registered_name_with_pass_joins_a_room_and_talks_both_ways(irc_server, tmp_path):
    import pexpect

    from chatroom.protocol import ListUsers
    from chatroom.room_frames import EventKind, RoomEvent

    (tmp_path / "config").write_text(
        "settings = {\n"
        '  core = { real_name = "alice"; user_name = "alice"; nick = "alice"; };\n'
        f'  "fe-common/core" = {{ autolog = "yes"; autolog_path = "{tmp_path}/logs/$0.log"; }};\n'
        "};\n"
    )
    native(irc_server.address, "alice", password="s3cret").close()  # (registered: irssi gives its password, PASS)
    bob = native(irc_server.address, "bob", "#team")
    irssi = pexpect.spawn(
        "irssi",
        ["--home", str(tmp_path), "-c", "127.0.0.1", "-p", str(irc_server.irc_port), "-n", "alice", "-w", "s3cret"],
        dimensions=(30, 100),
        env=dict(os.environ, TERM="xterm"),
    )
    try:
        eventually(lambda: "alice" in bob.reply(ListUsers()).names, timeout=WAIT * 2, what="irssi logged in")
        irssi.send("/join #team\r")
        events = bob.pushes_of(RoomEvent, 2)  # (bob's own joining first)
        assert [(e.kind, e.actor) for e in events] == [(EventKind.JOINED, "bob"), (EventKind.JOINED, "alice")]
        irssi.send("/msg bob hello from irssi\r")
        irssi.send("/msg #team hello team from irssi\r")
        [hello] = bob.pushes_of(DirectMessage, 1)
        assert (hello.sender, hello.text) == ("alice", "hello from irssi")
        assert [m.text for m in bob.pushes_of(RoomMessage, 1)] == ["hello team from irssi"]
        assert bob.reply(SendTo("alice", "hello irssi")) == OK
        assert bob.reply(SendTo("#team", "hello room")) == OK
        logs = tmp_path / "logs"

        def logged(name):
            return (logs / name).read_text(errors="replace") if (logs / name).exists() else ""

        eventually(lambda: "<bob> hello irssi" in logged("bob.log"), timeout=WAIT * 2, what="bob's message")
        eventually(lambda: "< bob> hello room" in logged("#team.log"), timeout=WAIT * 2, what="the room's")
        assert bob.reply(Logout()) == OK  # (a guest: out of the room, a quit to irssi, not a part)
        eventually(lambda: "bob [bob@chatroom] has quit [logged out]" in logged("#team.log"), what="bob's quit")
        irssi.send("/quit\r")
        irssi.expect(pexpect.EOF, timeout=WAIT)
    finally:
        irssi.close(force=True)
        bob.close()
