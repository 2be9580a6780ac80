"""Session tokens (log in again without the password) and presence pushed to watchers: the
rules without sockets, over the in-process directory and an in-memory store."""

import pytest

from chatroom.codec import Decoder, encode
from chatroom.protocol import (
    Authenticate,
    ChangePassword,
    Logout,
    Presence,
    Reason,
    Register,
    Resume,
    SendTo,
    SessionToken,
    StoredMessage,
    TokenRequest,
    Watch,
)
from chatroom.server.presence import watch
from chatroom.server.storage.accounts import MOST_TOKENS
from chatroom.testing import OK, failure


@pytest.fixture
def connect(hello_client):
    return lambda name=None: hello_client(name, version=2)


def registered(connect, name):
    client = connect()
    assert client.ask(Register(name, "secret")) == [OK]
    return client


def token_of(client) -> str:
    [reply] = client.ask(TokenRequest())
    assert isinstance(reply, SessionToken) and len(reply.token) >= 32  # 192 random bits
    return reply.token


def test_the_frames_round_trip():
    for message, data in [
        (TokenRequest(), b"\x0a\x00\x00\x00\x00"),
        (Resume("al", "tk"), b"\x0b\x00\x00\x00\x05\x02altk"),
        (Watch(True), b"\x0c\x00\x00\x00\x01\x01"),
    ]:
        assert encode(message) == data and Decoder.for_server().receive_data(data) == [message]
    for message, data in [
        (SessionToken("tk"), b"\x87\x00\x00\x00\x02tk"),
        (Presence((("al", True), ("bo", False))), b"\x88\x00\x00\x00\x08\x01\x02al\x00\x02bo"),
    ]:
        assert encode(message) == data and Decoder.for_client().receive_data(data) == [message]


def test_a_token_logs_the_account_in_again_without_its_password(connect):
    alice = registered(connect, "alice")
    token = token_of(alice)
    alice.rules.log_out("reload")  # the page reloads: the connection ends without LOGOUT
    connect("bob").ask(SendTo("alice", "while reloading"))
    again = connect()
    replies = again.ask(Resume("alice", token))
    assert replies[0] == OK and isinstance(replies[1], StoredMessage)
    assert again.rules.name == "alice"


def test_a_wrong_token_or_another_names_token_is_refused(connect):
    alice = registered(connect, "alice")
    token = token_of(alice)
    alice.rules.log_out("gone")
    registered(connect, "bob").rules.log_out("gone")
    assert connect().ask(Resume("alice", "x" * len(token))) == [failure(Reason.INVALID_TOKEN)]
    assert connect().ask(Resume("bob", token)) == [failure(Reason.INVALID_TOKEN)]
    assert connect().ask(Resume("alice", "")) == [failure(Reason.INVALID_TOKEN)]


def test_logout_revokes_the_connections_tokens(connect):
    alice = registered(connect, "alice")
    token = token_of(alice)
    assert alice.ask(Logout()) == [OK]
    assert connect().ask(Resume("alice", token)) == [failure(Reason.INVALID_TOKEN)]


def test_a_new_password_revokes_every_token(connect):
    alice = registered(connect, "alice")
    token = token_of(alice)
    assert alice.ask(ChangePassword("secret", "new secret")) == [OK]
    alice.rules.log_out("gone")
    assert connect().ask(Resume("alice", token)) == [failure(Reason.INVALID_TOKEN)]
    assert connect().ask(Authenticate("alice", "new secret")) == [OK]


def test_only_a_registered_login_gets_a_token_and_it_is_stored_hashed(connect, accounts):
    assert connect("carol").ask(TokenRequest()) == [failure(Reason.NOT_REGISTERED)]
    token = token_of(registered(connect, "alice"))
    rows = accounts.store._worker.call(lambda db: db.execute("SELECT hash, name FROM tokens").fetchall())
    assert len(rows) == 1 and rows[0][1] == "alice" and token not in rows[0][0]


def test_an_account_keeps_its_newest_tokens_and_logout_revokes_those_of_its_connection(connect, accounts):
    """A client asking for tokens in a loop cannot fill the store: past MOST_TOKENS, the
    account's oldest is revoked; the connection still revokes its own at LOGOUT."""
    before = registered(connect, "alice")
    elsewhere = token_of(before)  # the oldest: a page reloaded since
    before.rules.log_out("reload")
    alice = connect()
    assert alice.ask(Authenticate("alice", "secret"))[0] == OK
    tokens = [token_of(alice) for _ in range(MOST_TOKENS + 2)]
    valid = [accounts.token_is_for("alice", token) for token in (elsewhere, tokens[0], tokens[2], tokens[-1])]
    assert valid == [False, False, True, True]  # (tokens[2]: the oldest kept)
    count = accounts.store._worker.call(lambda db: db.execute("SELECT count(*) FROM tokens").fetchone()[0])
    assert count == MOST_TOKENS and len(alice.rules._tokens) == MOST_TOKENS
    assert alice.ask(Logout()) == [OK]
    assert connect().ask(Resume("alice", tokens[-1])) == [failure(Reason.INVALID_TOKEN)]
    assert connect().ask(Resume("alice", tokens[3])) == [failure(Reason.INVALID_TOKEN)]


@pytest.fixture
def fast_watch(monkeypatch):
    monkeypatch.setattr(watch, "PERIOD", 0.05)


def next_presence(client) -> Presence:
    return client.next_of(Presence)


def test_a_watcher_gets_everyone_online_then_the_changes(connect, fast_watch):
    connect("alice")
    bob = connect("bob")
    watcher = connect()
    assert watcher.ask(Watch(True)) == [OK, Presence((("alice", True), ("bob", True)))]
    connect("carol")
    assert next_presence(watcher) == Presence((("carol", True),))
    bob.ask(Logout())
    assert next_presence(watcher) == Presence((("bob", False),))


def test_a_login_storm_is_one_update_and_who_came_and_went_is_not_mentioned(connect, monkeypatch):
    monkeypatch.setattr(watch, "PERIOD", 0.3)  # (the storm below takes a few milliseconds)
    watcher = connect()
    assert watcher.ask(Watch(True)) == [OK, Presence(())]
    clients = [connect(f"u{n:02d}") for n in range(50)]
    clients[0].ask(Logout())
    update = next_presence(watcher)
    assert update == Presence(tuple((f"u{n:02d}", True) for n in range(1, 50)))


def test_watching_stops_when_asked_and_when_the_connection_ends(connect, directory, fast_watch):
    watcher = connect()
    watcher.ask(Watch(True))
    assert watcher.ask(Watch(False)) == [OK]
    other = connect()
    other.ask(Watch(True))
    other.rules.closed()
    assert not directory.presence._watchers


def test_presence_more_than_a_frame_holds_comes_in_several_each_within_the_bound():
    from chatroom.device_frames import PresenceState, PresenceStatus
    from chatroom.protocol import MAX_BODY, Presence

    names = [chr(0x65E5) * 19 + chr(0x4E00 + number) for number in range(6_000)]  # (61 bytes each)
    away = [(name, PresenceState.AWAY, "é" * 100) for name in names[:1_000]]  # (263 bytes each)
    assert watch.in_frames(Presence, [("al", True)]) == [encode(Presence((("al", True),)))]
    for kind, entries in [(Presence, [(name, True) for name in names]), (PresenceStatus, away)]:
        frames = watch.in_frames(kind, entries)
        assert len(frames) > 1 and all(len(frame) - 5 <= MAX_BODY for frame in frames)
        read = Decoder.for_client().receive_data(b"".join(frames))
        assert [change for message in read for change in message.changes] == entries  # (all, in order)
