"""The IRC port's IRCv3 extensions over real sockets: labeled-response and batch, account-tag,
away-notify (and 301), chathistory, read-marker, and the replay of what a client without
chathistory missed in a channel."""

import re

import gevent
import pytest

from chatroom.device_frames import Away, Mark, Marked, PresenceStatus, Unread, UnreadCounts
from chatroom.protocol import SendTo, Watch
from chatroom.room_frames import Invite, Join, RoomMessage
from chatroom.server.irc.history import parse_irc_time
from chatroom.server.irc.tags import irc_time
from chatroom.testing import OK, WAIT, hello_peer
from chatroom.testing.waiting import eventually

pytestmark = pytest.mark.process

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def with_caps(irc, nick, caps, password=None):
    """An IRC client registered as nick with the capabilities caps (and the password)."""
    client = irc()
    if password is not None:
        client.send(f"PASS {password}")
    client.send("CAP LS 302", f"CAP REQ :{caps}", f"NICK {nick}", f"USER {nick} 0 * :{nick}", "CAP END")
    client.until("422")
    return client


def registered(irc_server, name, password="pw"):
    """A native client of version 4 that registers name (and stays logged in)."""
    return hello_peer(irc_server.address, 4, name, password)


@pytest.fixture
def alice_with_a_phone(irc_server, irc):
    """alice_with_a_phone(caps) -> (bob, phone, alice): bob and alice registered, alice on a
    native client of version 4 (her phone) and on IRC taking caps; closed at the end."""
    opened = []

    def start(caps: str):
        bob, phone = registered(irc_server, "bob"), registered(irc_server, "alice")
        opened.extend((bob, phone))
        return bob, phone, with_caps(irc, "alice", caps, password="pw")

    yield start
    for peer in opened:
        peer.close()


def tags_of(line: str) -> dict:
    assert line.startswith("@"), line
    return dict(tag.partition("=")[::2] for tag in line[1:].split(" ", 1)[0].split(";"))


def test_labeled_responses_are_one_line_a_batch_or_ack(irc_server, irc):
    alice = with_caps(irc, "alice", "batch labeled-response echo-message")
    bob = hello_peer(irc_server.address, 4, "bob")
    assert bob.reply(Join("#team")) == OK
    try:
        alice.send("@label=one PING :x")
        assert alice.line() == "@label=one :chatroom PONG chatroom :x"
        alice.send("@label=two PONG :x")
        assert alice.line() == "@label=two :chatroom ACK"
        alice.sock.sendall(b"@label=utf PRIVMSG bob :caf\xe9\r\n")
        assert (
            alice.line()
            == "@label=utf :chatroom FAIL PRIVMSG INVALID_UTF8 :Message rejected for containing invalid UTF-8"
        )
        alice.send("@label=t\\:3 WHOIS bob")  # (an escaped ';' in the value)
        first = alice.line()
        batch_id = re.fullmatch(r"@label=t\\:3 :chatroom BATCH \+(\S+) labeled-response", first).group(1)
        lines = alice.until("BATCH")
        assert lines[0] == f"@batch={batch_id} :chatroom 311 alice bob bob chatroom * :bob"
        assert lines[-1] == f":chatroom BATCH -{batch_id}"
        alice.send("@label=four PRIVMSG bob :hi")  # the echo is the labeled answer
        assert alice.line() == "@label=four :alice!alice@chatroom PRIVMSG bob :hi"
        alice.send("JOIN #team")
        alice.until("366")
        alice.send("@label=five PRIVMSG #team :to the room", "PING :after")
        assert alice.line() == "@label=five :alice!alice@chatroom PRIVMSG #team :to the room"
        assert alice.line() == ":chatroom PONG chatroom :after"  # (and no ACK)
    finally:
        bob.close()


def test_account_tag_away_notify_and_301(irc_server, irc):
    carol = registered(irc_server, "carol")
    dave = hello_peer(irc_server.address, 4, "dave")
    alice = with_caps(irc, "alice", "account-tag away-notify")
    try:
        assert carol.reply(SendTo("alice", "from an account")) == OK
        assert alice.line() == "@account=carol :carol!carol@chatroom PRIVMSG alice :from an account"
        assert dave.reply(SendTo("alice", "from no account")) == OK
        assert alice.line() == ":dave!dave@chatroom PRIVMSG alice :from no account"
        # carol has a conversation with alice now: alice hears when she goes away and back.
        assert carol.reply(Away(True, "lunch")) == OK
        with gevent.Timeout(WAIT):
            assert alice.line() == ":carol!carol@chatroom AWAY :lunch"
        alice.send("PRIVMSG carol :are you there?", "WHOIS carol")
        assert alice.line() == ":chatroom 301 alice carol :lunch"
        assert ":chatroom 301 alice carol :lunch" in alice.until("318")
        assert carol.reply(Away(False, "")) == OK
        with gevent.Timeout(WAIT):
            assert alice.line() == ":carol!carol@chatroom AWAY"
    finally:
        carol.close()
        dave.close()


def test_a_registered_member_with_no_session_is_away_in_who_and_to_away_notify(irc_server, irc):
    from chatroom.protocol import Authenticate, Hello, Logout

    rita = registered(irc_server, "rita")
    assert rita.reply(Join("#den")) == OK and rita.reply(Logout()) == OK  # (a member still)
    ann = with_caps(irc, "ann", "away-notify")
    plain = irc()  # (a client without away-notify is told nothing of it, but WHO says it too)
    plain.register("pat")
    try:
        ann.send("JOIN #den")
        assert ann.until("366")[-2:] == [
            ":chatroom 353 ann = #den :ann @rita",
            ":chatroom 366 ann #den :End of /NAMES list",
        ]
        assert ann.line() == ":rita!rita@chatroom AWAY :Offline"
        plain.send("JOIN #den", "WHO #den")
        plain.until("366")
        *who, end = plain.until("315")
        assert sorted(who) == [
            ":chatroom 352 pat #den ann chatroom chatroom ann H :0 ann",
            ":chatroom 352 pat #den pat chatroom chatroom pat H :0 pat",
            ":chatroom 352 pat #den rita chatroom chatroom rita G@ :0 rita",
        ]
        assert end == ":chatroom 315 pat #den :End of /WHO list"
        assert ann.line() == ":pat!pat@chatroom JOIN :#den"
        plain.send("WHOIS rita")  # (not 401: a message to her is kept for her)
        assert plain.until("318") == [
            ":chatroom 311 pat rita rita chatroom * :rita",
            ":chatroom 319 pat rita :@#den",
            ":chatroom 312 pat rita chatroom :chatroom",
            ":chatroom 330 pat rita rita :is logged in as",
            ":chatroom 301 pat rita :Offline",
            ":chatroom 318 pat rita :End of /WHOIS list",
        ]
        plain.send("PRIVMSG rita :for when you are back")  # (kept for her: she is away, so to speak)
        assert plain.line() == ":chatroom 301 pat rita :Offline"
        # Back, away, gone again: each as away-notify says it, and WHO's flag with it.
        assert rita.reply(Hello(4)) == OK and rita.reply(Authenticate("rita", "pw")) == OK
        with gevent.Timeout(WAIT):
            assert ann.line() == ":rita!rita@chatroom AWAY"
        plain.send("WHO #den")
        assert ":chatroom 352 pat #den rita chatroom chatroom rita H@ :0 rita" in plain.until("315")
        assert rita.reply(Away(True, "lunch")) == OK
        with gevent.Timeout(WAIT):
            assert ann.line() == ":rita!rita@chatroom AWAY :lunch"
        plain.send("WHO #den")
        assert ":chatroom 352 pat #den rita chatroom chatroom rita G@ :0 rita" in plain.until("315")
        assert rita.reply(Logout()) == OK
        with gevent.Timeout(WAIT):
            assert ann.line() == ":rita!rita@chatroom AWAY :Offline"
        plain.send("PING :x")
        assert plain.line() == ":chatroom PONG chatroom :x"  # (nothing of it before)
    finally:
        rita.close()


def test_extended_join_userhost_in_names_whois_and_invite_notify(irc_server, irc):
    registered(irc_server, "dave").close()
    owner = registered(irc_server, "olga")
    assert owner.reply(Join("#den")) == OK
    ann = with_caps(irc, "ann", "extended-join userhost-in-names multi-prefix invite-notify")
    pia = with_caps(irc, "pia", "multi-prefix")  # (neither extended-join nor userhost-in-names)
    try:
        ann.send("JOIN #den")
        joined = ann.until("366")
        assert joined[0] == ":ann!ann@chatroom JOIN #den * :ann"  # (a guest: no account)
        [names] = [line for line in joined if " 353 " in line]
        assert set(names.split(" :", 1)[1].split()) == {"@olga!olga@chatroom", "ann!ann@chatroom"}
        pia.send("JOIN #den")
        assert pia.line() == ":pia!pia@chatroom JOIN :#den"
        [names] = [line for line in pia.until("366") if " 353 " in line]
        assert set(names.split(" :", 1)[1].split()) == {"@olga", "ann", "pia"}
        assert ann.line() == ":pia!pia@chatroom JOIN #den * :pia"
        # A registered user joins: each of the others is told as it asked.
        dave = with_caps(irc, "dave", "extended-join", password="pw")
        dave.send("JOIN #den")
        assert dave.line() == ":dave!dave@chatroom JOIN #den dave :dave"
        with gevent.Timeout(WAIT):
            assert ann.line() == ":dave!dave@chatroom JOIN #den dave :dave"
            assert pia.line() == ":dave!dave@chatroom JOIN :#den"
        assert owner.reply(Join("#secret")) == OK  # (a room of olga's that pia is not in)
        pia.send("WHOIS dave", "WHOIS ann", "WHOIS olga")
        whois_dave = pia.until("318")
        assert ":chatroom 330 pia dave dave :is logged in as" in whois_dave
        assert ":chatroom 319 pia dave :#den" in whois_dave  # (the channels they share)
        assert not any(" 330 " in line for line in pia.until("318"))
        assert ":chatroom 319 pia olga :@#den" in pia.until("318")  # (not #secret)
        # invite-notify: the members who asked for it see the owner's invitations.
        assert owner.reply(Invite("#den", "zed")) == OK
        with gevent.Timeout(WAIT):
            assert ann.line() == ":olga!olga@chatroom INVITE zed :#den"
        pia.send("PING :after")
        assert pia.line() == ":chatroom PONG chatroom :after"  # (and nothing before it)
        # A guest's name registered since it last joined: the same join names its account now.
        for password in (None, "pw"):
            if password is not None:
                registered(irc_server, "gus").close()
            gus = with_caps(irc, "gus", "", password=password)
            gus.send("JOIN #den")
            gus.until("366")
            with gevent.Timeout(WAIT):
                assert ann.line() == f":gus!gus@chatroom JOIN #den {'gus' if password else '*'} :gus"
            gus.send("QUIT")
            assert gus.line().startswith("ERROR ")
            if password is None:  # (a guest's rooms are left as it goes; a registered member stays one)
                with gevent.Timeout(WAIT):
                    assert ann.line() == ":gus!gus@chatroom QUIT :logged out"
    finally:
        owner.close()


def test_chathistory_answers_each_subcommand_in_a_batch(irc_server, irc):
    bob = registered(irc_server, "bob")
    registered(irc_server, "alice").close()
    alice = with_caps(irc, "alice", "batch server-time message-tags draft/chathistory", password="pw")
    try:
        for n in range(5):
            assert bob.reply(SendTo("alice", f"m{n}")) == OK
        live = [alice.line() for _ in range(5)]
        ids = [tags_of(line)["msgid"] for line in live]
        times = [tags_of(line)["time"] for line in live]
        alice.send("PRIVMSG bob :my answer")

        def history(*params) -> list[str]:
            alice.send("CHATHISTORY " + " ".join(params))
            start = alice.line()
            batch_id = re.fullmatch(r":chatroom BATCH \+(\S+) chathistory (\S+)", start).group(1)
            lines = alice.until("BATCH")
            assert lines[-1] == f":chatroom BATCH -{batch_id}"
            assert all(tags_of(line)["batch"] == batch_id for line in lines[:-1])
            return [line.split(" ", 1)[1] for line in lines[:-1]]

        def texts(lines):
            return [line.rsplit(" :", 1)[1] for line in lines]

        latest = eventually(lambda: (got := history("LATEST", "bob", "*", "3")) and "my answer" in texts(got) and got)
        assert latest[-1] == ":alice!alice@chatroom PRIVMSG bob :my answer"  # one's own, to the other
        assert latest[0] == ":bob!bob@chatroom PRIVMSG alice :m3"
        assert texts(history("BEFORE", "bob", f"msgid={ids[2]}", "10")) == ["m0", "m1"]
        assert texts(history("AFTER", "bob", f"msgid={ids[1]}", "2")) == ["m2", "m3"]
        assert texts(history("BETWEEN", "bob", f"msgid={ids[0]}", f"msgid={ids[4]}", "10")) == ["m1", "m2", "m3"]
        assert texts(history("BETWEEN", "bob", f"msgid={ids[4]}", f"msgid={ids[0]}", "2")) == ["m2", "m3"]
        assert texts(history("AROUND", "bob", f"msgid={ids[2]}", "3")) == ["m1", "m2", "m3"]
        # By time (messages a millisecond apart, or less, share one):
        just_before = irc_time(parse_irc_time(times[0]) - 1)
        assert len(history("LATEST", "bob", f"timestamp={just_before}", "10")) == 6
        assert texts(history("BEFORE", "bob", "timestamp=2200-01-01T00:00:00.000Z", "2")) == ["m4", "my answer"]
        assert history("AFTER", "bob", "timestamp=2200-01-01T00:00:00.000Z", "2") == []
        assert history("LATEST", "nobody", "*", "5") == []
        alice.send("CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z timestamp=2200-01-01T00:00:00.000Z 10")
        assert re.fullmatch(r":chatroom BATCH \+\S+ draft/chathistory-targets", alice.line())
        [target, end] = alice.until("BATCH")
        assert re.fullmatch(rf"@batch=\S+ CHATHISTORY TARGETS bob {TIME}", target), target
        assert end.startswith(":chatroom BATCH -")
        alice.send("CHATHISTORY FETCH bob * 5", "CHATHISTORY LATEST bob nope 5", "CHATHISTORY LATEST bob * 0")
        assert alice.line() == ":chatroom FAIL CHATHISTORY INVALID_PARAMS FETCH :Unknown command"
        assert alice.line() == ":chatroom FAIL CHATHISTORY INVALID_PARAMS LATEST nope :Invalid message reference"
        assert alice.line() == ":chatroom FAIL CHATHISTORY INVALID_PARAMS LATEST 0 :Invalid limit"
        stranger = with_caps(irc, "stranger", "batch draft/chathistory")  # (no account: no history)
        stranger.send("CHATHISTORY LATEST bob * 5")
        assert stranger.line() == (
            ":chatroom FAIL CHATHISTORY INVALID_TARGET LATEST bob :Messages could not be retrieved"
        )
    finally:
        bob.close()


def test_a_rooms_messages_have_msgids_of_their_own_live_and_in_its_history(irc_server, irc):
    """Two rooms' first messages have ids of 1 in each: their msgids differ, the history gives
    each message the msgid it had live, and a msgid points CHATHISTORY at its message."""
    bob = registered(irc_server, "bob")
    registered(irc_server, "alice").close()
    alice = with_caps(irc, "alice", "batch server-time message-tags draft/chathistory", password="pw")
    try:
        alice.send("JOIN #team", "JOIN #other")
        alice.until("366")
        alice.until("366")
        assert bob.reply(Join("#team")) == OK and bob.reply(Join("#other")) == OK
        assert [alice.line() for _ in range(2)] == [":bob!bob@chatroom JOIN :#team", ":bob!bob@chatroom JOIN :#other"]
        for n in range(3):
            assert bob.reply(SendTo("#team", f"t{n}")) == OK
        assert bob.reply(SendTo("#other", "o0")) == OK
        live = {line.rsplit(" :", 1)[1]: tags_of(line)["msgid"] for line in [alice.line() for _ in range(4)]}
        assert live["t0"].startswith("1-") and live["o0"].startswith("1-") and len(set(live.values())) == 4
        assert live["t0"].endswith("-#team") and live["o0"].endswith("-#other")

        def history(*params) -> dict[str, str]:
            alice.send("CHATHISTORY " + " ".join(params))
            assert re.fullmatch(r":chatroom BATCH \+\S+ chathistory #team", alice.line())
            return {line.rsplit(" :", 1)[1]: tags_of(line)["msgid"] for line in alice.until("BATCH")[:-1]}

        assert eventually(lambda: history("LATEST", "#team", "*", "10") == {t: live[t] for t in ("t0", "t1", "t2")})
        assert list(history("BEFORE", "#team", f"msgid={live['t2']}", "10")) == ["t0", "t1"]
        assert list(history("AFTER", "#team", f"msgid={live['t0']}", "10")) == ["t1", "t2"]
    finally:
        bob.close()


def test_ones_own_away_on_another_device_is_told_as_306_and_305(alice_with_a_phone):
    bob, phone, alice = alice_with_a_phone("away-notify")
    assert phone.reply(Watch(True)) == OK  # (the phone hears of alice's away as the port does)
    assert phone.reply(Away(True, "lunch")) == OK
    with gevent.Timeout(WAIT):
        assert alice.line() == ":chatroom 306 alice :You have been marked as being away"
    assert phone.reply(SendTo("bob", "back at my desk")) == OK  # (sending ends it)
    with gevent.Timeout(WAIT):
        assert alice.until("305") == [
            ":alice!alice@chatroom PRIVMSG bob :back at my desk",  # (sent from another device)
            ":chatroom 305 alice :You are no longer marked as being away",
        ]
    # Its own AWAY is answered once (the presence it makes is not told again).
    alice.send("AWAY :meeting")
    assert alice.line() == ":chatroom 306 alice :You have been marked as being away"

    def heard_meeting():
        return any(change[2] == "meeting" for m in phone.pushes_of(PresenceStatus, 1) for change in m.changes)

    eventually(heard_meeting, what="the presence the AWAY made")
    alice.send("PING :after")
    assert alice.line() == ":chatroom PONG chatroom :after"


def test_read_markers_both_ways_and_on_join(alice_with_a_phone):
    bob, phone, alice = alice_with_a_phone("server-time draft/read-marker")
    assert bob.reply(SendTo("alice", "read me")) == OK
    line = alice.line()
    stamp = tags_of(line)["time"]
    alice.send(f"MARKREAD bob timestamp={stamp}")
    assert alice.line() == f":chatroom MARKREAD bob timestamp={stamp}"
    pushed = phone.pushes_of(Marked, 1)[0]
    assert pushed.conversation == "bob"
    counts = phone.reply(Unread())
    assert isinstance(counts, UnreadCounts) and ("bob", 0) in [(e.conversation, e.count) for e in counts.entries]
    alice.send("MARKREAD bob timestamp=2001-01-01T00:00:00.000Z", "MARKREAD bob")  # older: kept as it is
    assert alice.line() == f":chatroom MARKREAD bob timestamp={stamp}"
    assert alice.line() == f":chatroom MARKREAD bob timestamp={stamp}"
    alice.send("MARKREAD", "MARKREAD bob yesterday")
    assert alice.line() == ":chatroom FAIL MARKREAD NEED_MORE_PARAMS :Missing parameters"
    assert alice.line() == ":chatroom FAIL MARKREAD INVALID_PARAMS yesterday :Invalid parameters"
    # On JOIN, the channel's marker comes before the end of NAMES; a marker another device
    # moves comes as it moves.
    alice.send("JOIN #team")
    joined = alice.until("366")
    assert joined.index(":chatroom MARKREAD #team *") == 1  # (right after the JOIN)
    assert bob.reply(Join("#team")) == OK
    assert alice.line() == ":bob!bob@chatroom JOIN :#team"
    assert bob.reply(SendTo("#team", "in the room")) == OK
    in_room = alice.line()
    assert in_room.endswith("PRIVMSG #team :in the room")
    [room_message] = phone.pushes_of(RoomMessage, 1)
    room_id = room_message.id
    assert phone.reply(Mark("#team", room_id)) == OK
    assert alice.line() == f":chatroom MARKREAD #team timestamp={tags_of(in_room)['time']}"


def test_a_client_without_chathistory_gets_what_it_missed_when_it_joins(irc_server, irc):
    bob = registered(irc_server, "bob")
    registered(irc_server, "rita").close()
    rita = irc()
    rita.register("rita", "pw")
    rita.send("JOIN #team")
    rita.until("366")
    assert bob.reply(Join("#team")) == OK
    rita.send("QUIT")
    while not rita.line().startswith("ERROR "):  # (bob's JOIN first)
        pass
    try:
        for n in range(3):
            assert bob.reply(SendTo("#team", f"while away {n}")) == OK
        # Back, rita is in her channels at once (as Ergo does), with what she missed; her
        # client's JOIN finds her there.
        again = irc()
        eventually(lambda: again.register("rita", "pw") and True, what="rita back")
        again.send("JOIN #team", "PING :end")
        assert again.until("366")[0] == ":rita!rita@chatroom JOIN :#team"
        assert [again.line() for _ in range(4)] == [
            *(f":bob!bob@chatroom PRIVMSG #team :while away {n}" for n in range(3)),
            ":chatroom PONG chatroom :end",
        ]
        knowing = with_caps(irc, "rita", "draft/chathistory", password="pw")  # rita's second device
        knowing.send("JOIN #team", "PING :end")
        knowing.until("366")
        assert knowing.line() == ":chatroom PONG chatroom :end"  # (it asks for what it wants)
    finally:
        bob.close()


def test_odd_history_and_marker_requests_get_answers_and_leave_the_log_clean(irc_server, irc):
    import random

    from chatroom.testing import assert_clean_log

    registered(irc_server, "ann").close()
    ann = with_caps(irc, "ann", "batch labeled-response draft/chathistory draft/read-marker", password="pw")
    ann.send(
        "CHATHISTORY BEFORE bob msgid=99999999999999999999999 5",  # (past any id SQLite can hold)
        "MARKREAD bob timestamp=9999-12-31T23:59:59.999Z",  # (a marker never goes past now)
    )
    assert re.fullmatch(r":chatroom BATCH \+\S+ chathistory bob", ann.line())
    assert ann.line().startswith(":chatroom BATCH -")
    [marked] = re.fullmatch(rf":chatroom MARKREAD bob timestamp=({TIME})", ann.line()).groups()
    assert marked < "2100"
    words = [
        "*",
        "bob",
        "#team",
        "#",
        "`zz",
        "msgid=",
        "msgid=-1",
        "msgid=99999999999999999999999",
        "msgid=\u00b2",  # (a digit to str.isdigit, none to int)
        "msgid=1-2-#team",
        "msgid=1-x-#team",
        "timestamp=",
        "timestamp=2020-13-45T99:99:99.999Z",
        "timestamp=1999-01-01T00:00:00Z",
        "0",
        "-5",
        "101",
        "x" * 300,
    ]
    subcommands = ["LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN", "TARGETS", "latest", ""]
    rng = random.Random(7)
    for n in range(200):
        if n % 2:
            line = "CHATHISTORY " + " ".join([rng.choice(subcommands)] + rng.sample(words, rng.randrange(0, 5)))
        else:
            line = "MARKREAD " + " ".join(rng.sample(words, rng.randrange(0, 3)))
        ann.send(f"@label=l{n} {line}".strip())
    ann.send("PING :still here")
    with gevent.Timeout(WAIT * 2):
        while ann.line() != ":chatroom PONG chatroom :still here":
            pass
    assert_clean_log(irc_server.log_text())
