"""Why a request failed: FAILURE with a reason, for clients of extension version 2 (no
sockets; the rules over the in-process directory and an in-memory store)."""

import pytest

from chatroom.codec import Decoder, encode
from chatroom.protocol import (
    Authenticate,
    ChangePassword,
    Hello,
    HistoryRequest,
    Login,
    Logout,
    Reason,
    Register,
    Response,
    SendTo,
    Status,
)
from chatroom.server.storage import throttle
from chatroom.testing import FAILURE, OK, failure
from tests.test_rules import Client


@pytest.fixture
def connect(hello_client):
    return lambda name=None, version=2, peer="127.0.0.1:40000": hello_client(name, version, peer=peer)


def test_reason_bytes_follow_the_status_and_a_detail_follows_as_text():
    assert encode(failure(Reason.NAME_IN_USE)) == b"\x82\x00\x00\x00\x02\x01\x02"
    assert encode(failure(Reason.LOOKS_LIKE, "bob")) == b"\x82\x00\x00\x00\x05\x01\x03bob"
    assert Decoder.for_client().receive_data(b"\x82\x00\x00\x00\x04\x01\x0560") == [
        failure(Reason.TOO_MANY_TRIES, "60")
    ]
    # A reason newer than the client is still a FAILURE.
    assert Decoder.for_client().receive_data(b"\x82\x00\x00\x00\x02\x01\xee") == [Response(Status.FAILURE, None, "")]


def test_login_says_why_it_failed(connect):
    connect("bob")
    alice = connect()
    assert alice.ask(Login("bob")) == [failure(Reason.NAME_IN_USE)]
    assert alice.ask(Login("b\u043eb")) == [failure(Reason.LOOKS_LIKE, "bob")]
    assert alice.ask(Login("has space")) == [failure(Reason.INVALID_NAME)]
    assert alice.ask(Login("alice")) == [OK]
    assert alice.ask(Login("alice2")) == [failure(Reason.ALREADY_LOGGED_IN, "alice")]
    assert alice.ask(Logout()) == [OK]
    assert alice.ask(Logout()) == [failure(Reason.NOT_LOGGED_IN)]


def test_a_client_of_version_1_still_gets_the_one_byte_failure(connect):
    connect("bob")
    old = connect(version=1)
    assert old.ask(Login("bob")) == [FAILURE]
    assert old.ask(SendTo("bob", "hi")) == [FAILURE]


def test_the_right_password_for_a_name_in_use_is_name_in_use_not_wrong_password(connect):
    owner = connect()
    assert owner.ask(Register("bob", "secret")) == [OK]
    other = connect(peer="127.0.0.2:1")
    assert other.ask(Login("bob")) == [Response(Status.REGISTERED)]
    for _ in range(3):
        assert other.ask(Authenticate("bob", "secret")) == [failure(Reason.NAME_IN_USE)]
    assert other.ask(Authenticate("bob", "wrong")) == [failure(Reason.WRONG_PASSWORD)]


def test_too_many_tries_says_for_how_long(connect, monkeypatch):
    owner = connect()
    assert owner.ask(Register("bob", "secret")) == [OK]
    guesser = connect(peer="10.0.0.9:1")
    for _ in range(throttle.PER_PAIR):
        assert guesser.ask(Authenticate("bob", "guess")) == [failure(Reason.WRONG_PASSWORD)]
    [reply] = guesser.ask(Authenticate("bob", "guess"))
    assert reply.reason is Reason.TOO_MANY_TRIES
    assert 55 <= int(reply.detail) <= 60


def test_sendto_says_why_it_failed(connect, accounts):
    nobody = connect()
    assert nobody.ask(SendTo("bob", "hi")) == [failure(Reason.NOT_LOGGED_IN)]
    alice = connect("alice")
    assert alice.ask(SendTo("carol", "hi")) == [failure(Reason.NOT_ONLINE)]
    assert alice.ask(SendTo("alice", "")) == [failure(Reason.INVALID_TEXT)]


def test_a_full_mailbox_says_so(connect, accounts, monkeypatch):
    bob = connect()
    assert bob.ask(Register("bob", "secret")) == [OK] and bob.ask(Logout()) == [OK]
    monkeypatch.setattr(accounts, "keep_offline", lambda *args: None)  # (a full mailbox: nothing kept)
    assert connect("alice").ask(SendTo("bob", "hi")) == [failure(Reason.MAILBOX_FULL)]


def test_register_and_the_account_requests_say_why_they_failed(connect):
    bob = connect()
    assert bob.ask(Register("bob", "secret")) == [OK]
    other = connect()
    assert other.ask(Register("bob", "secret")) == [failure(Reason.NAME_IN_USE)]
    assert bob.ask(Logout()) == [OK]
    assert other.ask(Register("bob", "secret")) == [failure(Reason.NAME_REGISTERED)]
    assert other.ask(Register("b\u043eb", "secret")) == [failure(Reason.LOOKS_LIKE, "bob")]
    assert other.ask(Register("carol", "")) == [failure(Reason.INVALID_PASSWORD)]
    assert other.ask(HistoryRequest("bob", 10)) == [failure(Reason.NOT_REGISTERED)]
    assert other.ask(ChangePassword("a", "b")) == [failure(Reason.NOT_REGISTERED)]
    assert bob.ask(Authenticate("bob", "secret")) == [OK]
    assert bob.ask(HistoryRequest("carol", 5000)) == [failure(Reason.INVALID_COUNT)]
    assert bob.ask(ChangePassword("wrong", "new")) == [failure(Reason.WRONG_PASSWORD)]


def test_without_accounts_the_extension_says_so(directory):
    client = Client(directory, None)
    assert client.ask(Hello(2)) == [OK]
    assert client.ask(Register("alice", "secret")) == [failure(Reason.NO_ACCOUNTS)]


def test_the_clients_have_words_for_every_reason():
    import re
    from pathlib import Path

    from chatroom.client.reasons import server_reason

    script = (Path(__file__).parent.parent / "chatroom" / "web" / "protocol.js").read_text()
    in_the_browser = {int(code, 16) for code in re.findall(r"^  0x([0-9a-f]{2}): \"", script, re.MULTILINE)}
    for reason in Reason:
        assert server_reason(failure(reason, "7")), reason  # (the terminal's)
        assert reason in in_the_browser, reason
    # A room that looks like another (a JOIN's) is no person logged in or registered.
    said = "looks like the room #team, which is there already"
    assert server_reason(failure(Reason.LOOKS_LIKE, "#team"), "#Team") == said
    assert f'"{said.replace("#team", "{detail}")}"' in script
