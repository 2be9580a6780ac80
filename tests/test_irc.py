"""The IRC port over real sockets: registration, PING, messages both ways with native clients,
the numerics for what goes wrong, and bad input."""

import re
import signal
import time

import gevent
import pytest

from chatroom.protocol import Authenticate, DirectMessage, Hello, Incoming, ListUsers, Login, Logout, SendTo, UserList
from chatroom.server.irc.tags import irc_time
from chatroom.testing import OK, WAIT, IrcPeer, Peer, free_port, hello_peer, logged_in
from chatroom.testing.waiting import eventually

pytestmark = pytest.mark.process


def test_registration_welcomes_with_the_real_limits_and_ping_is_answered(irc):
    alice = irc()
    welcome = alice.register("alice")
    assert welcome[0] == ":chatroom 001 alice :Welcome to chatroom, alice"
    [isupport] = [line for line in welcome if " 005 " in line]
    assert "NICKLEN=20" in isupport and "CHANTYPES=#" in isupport
    assert " UTF8ONLY " in isupport and " CLIENTTAGDENY=* " in isupport
    alice.send("PING :abc")
    assert alice.line() == ":chatroom PONG chatroom :abc"


def test_messages_go_both_ways_between_irc_and_a_native_client(irc_server, irc):
    alice = irc()
    alice.register("alice")
    bob = logged_in(irc_server.address, "bob")
    try:
        alice.send("PRIVMSG bob :hello from irc")
        assert bob.next_event() == Incoming("alice", "hello from irc")
        assert bob.request(SendTo("alice", "hello from tcp\nsecond line")) == OK
        assert alice.line() == ":bob!bob@chatroom PRIVMSG alice :hello from tcp"
        assert alice.line() == ":bob!bob@chatroom PRIVMSG alice :second line"  # (a line of its own)
        alice.send("PRIVMSG bob,nobody :to you both", "PRIVMSG bob :")
        assert bob.next_event() == Incoming("alice", "to you both")
        assert alice.line() == ":chatroom 401 alice nobody :No such nick/channel"
        assert alice.line() == ":chatroom 412 alice :No text to send"
    finally:
        bob.close()


def test_me_is_relayed_and_other_ctcp_is_not(irc_server, irc):
    ann, ben = irc(), irc()
    ann.register("ann")
    ben.register("ben")
    nat = logged_in(irc_server.address, "nat")
    try:
        # A CTCP request and its reply: relayed, the reply would reach ann as a PRIVMSG, a
        # request her client would answer again. Neither goes; /me does, to either kind.
        ann.send("PRIVMSG ben :\x01VERSION\x01", "PRIVMSG ben :\x01ACTION waves\x01", "PRIVMSG nat :\x01PING 1\x01")
        ben.send("NOTICE ann :\x01VERSION irssi 1.4\x01", "PRIVMSG ann :after")
        ann.send("PRIVMSG nat :\x01ACTION waves\x01", "NOTICE ben :\x01ACTION notices\x01", "PRIVMSG ben :after")
        assert ben.line() == ":ann!ann@chatroom PRIVMSG ben :\x01ACTION waves\x01"
        assert ben.line() == ":ann!ann@chatroom PRIVMSG ben :after"
        assert ann.line() == ":ben!ben@chatroom PRIVMSG ann :after"
        assert nat.next_event() == Incoming("ann", "\x01ACTION waves\x01")
    finally:
        nat.close()


def test_names_that_are_no_nicknames_are_reached_by_their_mapping(irc_server, irc):
    alice = irc()
    alice.register("alice")
    native = Peer(irc_server.address)
    try:
        assert native.request(Login("日本")) == OK
        native.request(SendTo("alice", "konnichiwa"))
        assert alice.line() == ":`42l2lzu4vq!`42l2lzu4vq@chatroom PRIVMSG alice :konnichiwa"
        alice.send("PRIVMSG `42l2lzu4vq :and back")
        assert native.next_event() == Incoming("alice", "and back")
    finally:
        native.close()


def test_what_goes_wrong_gets_its_numeric(irc_server, irc):
    early = irc()
    early.send("PRIVMSG bob :too early")
    assert early.line() == ":chatroom 451 * :You have not registered"
    early.send("NICK 1bad")
    assert early.line() == ":chatroom 432 * 1bad :Erroneous nickname"
    alice = irc()
    alice.register("alice")
    taken = irc()
    taken.send("NICK alice", "USER a 0 * :A")
    assert taken.line() == ":chatroom 433 alice alice :Nickname is already in use"
    alice.send("PRIVMSG nobody :hi", "PRIVMSG", "PRIVMSG bob", "FROB", "USER a 0 * :A")
    assert [alice.line() for _ in range(5)] == [
        ":chatroom 401 alice nobody :No such nick/channel",
        ":chatroom 411 alice :No recipient given (PRIVMSG)",
        ":chatroom 412 alice :No text to send",
        ":chatroom 421 alice FROB :Unknown command",
        ":chatroom 462 alice :You may not reregister",
    ]
    alice.send("PRIVMSG bob :" + "x" * 600)
    assert alice.line() == ":chatroom 417 alice :Input line was too long"
    alice.sock.sendall(b"\x00\xff\xfe\r\n")
    assert alice.line() == ":chatroom 421 alice ? :Unknown command (not an IRC message)"
    alice.sock.sendall(b"PRIVMSG bob :caf\xe9\r\nTOPIC #r :\xe9t\xe9\r\n")  # (Latin-1, not UTF-8)
    assert [alice.line() for _ in range(2)] == [
        ":chatroom FAIL PRIVMSG INVALID_UTF8 :Message rejected for containing invalid UTF-8",
        ":chatroom FAIL TOPIC INVALID_UTF8 :Message rejected for containing invalid UTF-8",
    ]
    alice.send("QUIT :bye")
    assert alice.line().startswith("ERROR ")
    assert alice.sock.recv(100) == b""  # closed
    watcher = logged_in(irc_server.address, "watcher")
    try:
        eventually(lambda: watcher.request(ListUsers()) == UserList(("watcher",)))  # alice logged out
    finally:
        watcher.close()


def test_a_registered_name_needs_its_password(irc_server, irc):
    owner = hello_peer(irc_server.address, 3, "carol", "secret")
    owner.close()
    guess = irc()
    guess.send("NICK carol", "USER c 0 * :C")
    assert guess.line() == ":chatroom 433 carol carol :Nickname is registered: log in with PASS"
    wrong = irc()
    wrong.send("PASS nope", "NICK carol", "USER c 0 * :C")
    assert wrong.line() == ":chatroom 464 carol :Password incorrect"
    right = irc()
    assert right.register("carol", "secret")[0].startswith(":chatroom 001 carol ")


def test_random_bytes_get_numerics_or_nothing_and_the_port_carries_on(irc_server, irc):
    import random

    from chatroom.testing import assert_clean_log

    rng = random.Random(7)
    for _ in range(20):
        flood = irc()
        for _ in range(50):
            chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
            try:
                flood.sock.sendall(chunk)
            except OSError:
                break  # (it may close a connection that sent a QUIT among the bytes)
    fine = irc()
    fine.register("after")
    fine.send("PING :still")
    assert fine.until("PONG")[-1] == ":chatroom PONG chatroom :still"
    assert_clean_log(irc_server.log_text())


# Lines registered clients send, for the fuzzer below: the relay's compiled way (PRIVMSGs to a
# nick or a channel, with and without tags) and what it leaves to the Python, filled at random.
_FUZZED_LINES = (
    "PRIVMSG f{n} :{text}",
    "PRIVMSG #fz :{text}",
    "@{tags} PRIVMSG f{n} :{text}",
    "@{tags} PRIVMSG #fz :{text}",
    "@{tags} TAGMSG f{n}",
    "PRIVMSG f{n},#fz :{text}",
    "NOTICE f{n} :{text}",
    "PRIVMSG f{n} :\x01ACTION {text}\x01",
    "PRIVMSG `zz{n} :{text}",
    "PRIVMSG f{n}",
    "AWAY :{text}",
    "AWAY",
    "PART #fz",
    "JOIN #fz",
    "TOPIC #fz :{text}",
    "CHATHISTORY LATEST f{n} * 5",
    "MARKREAD #fz timestamp=2026-01-01T00:00:00.000Z",
)


def _fuzzed_line(rng) -> bytes:
    tags = ";".join(
        rng.choice(["+draft/reply", "+typing", "msgid", "time", "label", "", "=", "k" * rng.randrange(1, 600)])
        + "="
        + rng.choice(["", "1", "\\s\\:\\\\", "\\", "é", "x" * rng.randrange(0, 9000)])
        for _ in range(rng.randrange(0, 4))
    )
    text = rng.choice(["hi", "", " ", "é日本\u202e", "a\x00b", ":", "x" * rng.randrange(0, 3000)])
    line = bytearray(rng.choice(_FUZZED_LINES).format(n=rng.randrange(10), text=text, tags=tags).encode() + b"\r\n")
    for _ in range(rng.randrange(0, 4) if rng.random() < 0.3 else 0):  # a few of them broken
        at = rng.randrange(len(line) + 1)
        line[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(line)


def test_mutated_messages_from_registered_clients_never_hurt_the_port(irc_server, irc):
    import random

    from chatroom.testing import assert_clean_log

    rng = random.Random(11)
    clients = []
    for number in range(8):
        client = irc()
        if number % 2 == 0:  # (half of them taking every capability: the tags' ways too)
            client.send("CAP LS 302")
            offered = client.line().split(" :", 1)[1]
            client.send("CAP REQ :" + " ".join(cap.split("=")[0] for cap in offered.split()), "CAP END")
        client.register(f"f{number}")
        client.send("JOIN #fz")
        clients.append(client)
    delivered = 0
    for round_number in range(1200):
        try:
            rng.choice(clients).sock.sendall(_fuzzed_line(rng))
        except OSError:
            pass  # (closed for what it sent: the others go on)
        if round_number % 50 == 0:
            for client in clients:  # (read what came, so that no queue fills)
                client.sock.setblocking(False)
                try:
                    while data := client.sock.recv(1 << 20):
                        delivered += data.count(b" PRIVMSG ")
                except OSError:
                    pass
                client.sock.settimeout(WAIT)
    assert delivered > 20  # (the fuzzing reached the relay: a few hundred, fewer under load)
    after = irc()
    after.register("after")
    after.send("PING :still")
    assert after.until("PONG")[-1] == ":chatroom PONG chatroom :still"
    assert_clean_log(irc_server.log_text())


def test_rooms_are_channels_both_ways(irc_server, irc):
    from chatroom.room_frames import EventKind, Join, RoomEvent, RoomMessage

    alice = irc()
    alice.register("alice")
    alice.send("JOIN #team")
    assert alice.until("366") == [
        ":alice!alice@chatroom JOIN :#team",
        ":chatroom 353 alice = #team :alice",
        ":chatroom 366 alice #team :End of /NAMES list",
    ]
    bob = hello_peer(irc_server.address, 3, "bob")
    try:
        assert bob.reply(Join("#team")) == OK
        assert alice.line() == ":bob!bob@chatroom JOIN :#team"
        assert bob.reply(SendTo("#team", "hello channel")) == OK
        assert alice.line() == ":bob!bob@chatroom PRIVMSG #team :hello channel"
        alice.send("PRIVMSG #team :hello room")
        [_own, said] = bob.pushes_of(RoomMessage, 2)  # (bob's own message first: a member gets his own)
        assert (said.room, said.sender, said.text) == ("#team", "alice", "hello room")
        alice.send("TOPIC #team", "TOPIC #team :mine now", "PRIVMSG #elsewhere :x", "JOIN bad", "PART #team :bye")
        assert [alice.line() for _ in range(5)] == [
            ":chatroom 331 alice #team :No topic is set",
            ":chatroom 482 alice #team :You're not channel operator (its owner)",
            ":chatroom 403 alice #elsewhere :No such channel",
            ":chatroom 403 alice bad :No such channel",
            ":alice!alice@chatroom PART #team :bye",
        ]
        [parted] = bob.pushes_of(RoomEvent, 1)
        assert (parted.kind, parted.actor) == (EventKind.PARTED, "alice")
        alice.send("PRIVMSG #team :not a member")
        assert alice.line() == ":chatroom 404 alice #team :Cannot send to channel"
        # A channel under another case is the room of that name (for IRC, one channel): joined
        # as the JOIN line says; once more, nothing; a look-alike of another kind (rn for m) is none.
        alice.send("JOIN #TEAM")
        assert alice.until("366") == [
            ":alice!alice@chatroom JOIN :#team",
            ":chatroom 353 alice = #team :alice bob",
            ":chatroom 366 alice #team :End of /NAMES list",
        ]
        alice.send("JOIN #Team", "JOIN #tearn", "PING :end")
        assert alice.line() == ":chatroom 403 alice #tearn :No such channel (it looks like another one)"
        assert alice.line() == ":chatroom PONG chatroom :end"
        # So is the channel of every other command, in any case.
        alice.send("PRIVMSG #TEAM :in capitals", "TOPIC #Team", "NAMES #TeAm", "LIST #TEAM", "PART #Team :off")
        [said] = bob.pushes_of(RoomMessage, 1)
        assert (said.room, said.sender, said.text) == ("#team", "alice", "in capitals")
        assert [alice.line() for _ in range(7)] == [
            ":chatroom 331 alice #Team :No topic is set",
            ":chatroom 353 alice = #TeAm :alice bob",
            ":chatroom 366 alice #TeAm :End of /NAMES list",
            ":chatroom 321 alice Channel :Users  Name",
            ":chatroom 322 alice #team 2 :",
            ":chatroom 323 alice :End of /LIST",
            ":alice!alice@chatroom PART #Team :off",
        ]
    finally:
        bob.close()


def test_who_is_there_away_and_an_owners_channel_commands(irc_server, irc):
    from chatroom.device_frames import PresenceState, PresenceStatus
    from chatroom.protocol import Authenticate, Watch

    owner = irc()
    owner.send("PASS pw")
    registering = hello_peer(irc_server.address, 4, "olga", "pw")
    registering.close()
    assert owner.register("olga", "pw")[0].startswith(":chatroom 001 olga ")
    guest = irc()
    guest.register("guest")
    owner.send("JOIN #club")
    owner.until("366")
    owner.send("WHOIS guest", "WHOIS nobody", "LUSERS", "MOTD")
    assert owner.until("318")[0] == ":chatroom 311 olga guest guest chatroom * :guest"
    assert owner.until("318") == [
        ":chatroom 401 olga nobody :No such nick/channel",
        ":chatroom 318 olga nobody :End of /WHOIS list",
    ]
    assert owner.until("255")[0] == ":chatroom 251 olga :There are 2 users and 0 invisible on 1 servers"
    assert owner.line() == ":chatroom 422 olga :MOTD File is missing"
    owner.send("MODE #club +i", "MODE #club", "INVITE guest #club", "WHO #club")
    assert owner.line() == ":olga!olga@chatroom MODE #club :+i"
    assert owner.line() == ":chatroom 324 olga #club :+i"
    assert owner.line() == ":chatroom 341 olga guest :#club"
    assert guest.line() == ":olga!olga@chatroom INVITE guest :#club"
    assert owner.until("315")[0] == ":chatroom 352 olga #club olga chatroom chatroom olga H@ :0 olga"
    guest.send("JOIN #club")
    guest.until("366")
    assert owner.line() == ":guest!guest@chatroom JOIN :#club"
    guest.send("KICK #club olga")
    assert guest.line() == ":chatroom 482 guest #club :You're not channel operator (its owner)"
    owner.send("MODE #club +o guest", "MODE #club +o nobody")  # (a room is owned by a registered member only)
    assert owner.line() == ":chatroom 482 olga #club :Only a registered member can own it"
    assert owner.line() == ":chatroom 441 olga nobody #club :They aren't on that channel"
    owner.send("KICK #club guest :out")
    assert owner.line() == ":olga!olga@chatroom KICK #club guest :olga"  # (chatroom keeps no reason)
    assert guest.line() == ":olga!olga@chatroom KICK #club guest :olga"
    # AWAY is the chatroom's away: those sharing a room or a conversation with olga see it.
    phone = Peer(irc_server.address)
    try:
        assert phone.reply(Hello(4)) == OK and phone.reply(Authenticate("olga", "pw")) == OK  # olga's other device
        assert phone.reply(Watch(True)) == OK
        owner.send("AWAY :at lunch")
        assert owner.line() == ":chatroom 306 olga :You have been marked as being away"
        with gevent.Timeout(WAIT):
            while phone.next_push() != PresenceStatus((("olga", PresenceState.AWAY, "at lunch"),)):
                pass
        phone.reply(SendTo("guest", "from olga's phone"))
        assert owner.line() == ":olga!olga@chatroom PRIVMSG guest :from olga's phone"  # (her own, elsewhere)
    finally:
        phone.close()


def test_ison_userhost_a_list_of_some_channels_and_join_0(irc, irc_server):
    ann, ben = irc(), irc()
    ann.register("ann")
    ben.register("ben")
    ann.send("ISON ben nobody BEN", "USERHOST ben nobody")
    assert ann.line() == ":chatroom 303 ann :ben BEN"  # (as asked; nicknames compared ignoring ASCII case)
    assert ann.line() == ":chatroom 302 ann :ben=+ben@chatroom"
    ben.send("AWAY :out")
    assert ben.line() == ":chatroom 306 ben :You have been marked as being away"
    ann.send("USERHOST ben", "ISON", "JOIN #a,#b")
    assert ann.line() == ":chatroom 302 ann :ben=-ben@chatroom"
    assert ann.line() == ":chatroom 461 ann ISON :Not enough parameters"
    ann.until("366")
    ann.until("366")
    ann.send("LIST #b,#nope")
    assert ann.until("323") == [
        ":chatroom 321 ann Channel :Users  Name",
        ":chatroom 322 ann #b 1 :",
        ":chatroom 323 ann :End of /LIST",
    ]
    ann.send("JOIN 0", "LIST")
    assert [ann.line() for _ in range(2)] == [":ann!ann@chatroom PART :#a", ":ann!ann@chatroom PART :#b"]
    assert ann.until("323") == [":chatroom 321 ann Channel :Users  Name", ":chatroom 323 ann :End of /LIST"]
    # Sending ends being away (chatroom's rule): the client is told, as by AWAY alone.
    ben.send("PRIVMSG ann :back now", "PRIVMSG ann :still here")
    assert ben.line() == ":chatroom 305 ben :You are no longer marked as being away"
    assert ann.line() == ":ben!ben@chatroom PRIVMSG ann :back now"
    assert ann.line() == ":ben!ben@chatroom PRIVMSG ann :still here"
    ben.send("PING :x")
    assert ben.line() == ":chatroom PONG chatroom :x"  # (told once)


def test_a_guest_out_of_its_channels_at_logout_is_one_quit_that_says_how(irc_server, irc):
    from chatroom.room_frames import Join

    ann, ben = irc(), irc()
    ann.register("ann")
    ben.register("ben")
    ann.send("JOIN #a,#b")
    ann.until("366")
    ann.until("366")
    ben.send("JOIN #a,#b")
    assert [ann.line() for _ in range(2)] == [":ben!ben@chatroom JOIN :#a", ":ben!ben@chatroom JOIN :#b"]
    nat = hello_peer(irc_server.address, 3, "nat")
    for rounds in range(2):  # (a QUIT shown once for one logout, and again for the next)
        assert nat.reply(Join("#a")) == OK and nat.reply(Join("#b")) == OK
        assert [ann.line() for _ in range(2)] == [":nat!nat@chatroom JOIN :#a", ":nat!nat@chatroom JOIN :#b"]
        if rounds == 0:
            assert nat.reply(Logout()) == OK
            assert ann.line() == ":nat!nat@chatroom QUIT :logged out"
            assert nat.reply(Login("nat")) == OK
        else:
            nat.close()
            assert ann.line() == ":nat!nat@chatroom QUIT :disconnected"
        ann.send("PING :x")
        assert ann.line() == ":chatroom PONG chatroom :x"  # (no second QUIT, nor a PART)
    ben.send("QUIT :bye")  # (an IRC guest's QUIT is its logout)
    assert ann.line() == ":ben!ben@chatroom QUIT :logged out"
    ann.send("PART #a", "NAMES #b")
    assert ann.line() == ":ann!ann@chatroom PART :#a"
    assert ann.until("366")[0] == ":chatroom 353 ann = #b :ann"


def test_a_guests_channel_is_its_first_registered_members_who_sees_it_in_its_names(irc_server, irc):
    hello_peer(irc_server.address, 4, "rita", "pw").close()
    gus, rita = irc(), irc()
    gus.register("gus")
    rita.send("PASS pw")
    rita.register("rita", "pw")
    gus.send("JOIN #g")
    gus.until("366")
    rita.send("JOIN #g", "PING :after")
    assert rita.until("366") == [
        ":rita!rita@chatroom JOIN :#g",
        ":chatroom 353 rita = #g :gus @rita",
        ":chatroom 366 rita #g :End of /NAMES list",
    ]
    assert rita.line() == ":chatroom PONG chatroom :after"  # (no MODE before its JOIN, nor after)
    assert gus.line() == ":rita!rita@chatroom JOIN :#g"
    assert gus.line() == ":rita!rita@chatroom MODE #g +o :rita"


def test_a_room_handed_on_has_one_operator_for_irc_clients_too(irc_server, irc):
    """A room has one owner: handed on (MODE +o from its owner, a GIVE, the owner leaving), its
    channel's operator changes, -o the one who had it, +o the new one, in one MODE."""
    from chatroom.room_frames import GiveRoom, Join

    hello_peer(irc_server.address, 4, "olga", "pw").close()
    olga, gus = irc(), irc()
    olga.send("PASS pw")
    olga.register("olga", "pw")
    gus.register("gus")
    olga.send("JOIN #h")
    olga.until("366")
    reg = hello_peer(irc_server.address, 4, "reg", "pw")
    try:
        assert reg.reply(Join("#h")) == OK
        gus.send("JOIN #h")
        assert gus.until("366")[1] == ":chatroom 353 gus = #h :gus @olga reg"
        olga.send("MODE #h +o reg")
        assert gus.line() == ":olga!olga@chatroom MODE #h -o+o olga :reg"
        assert olga.until("MODE")[-1] == ":olga!olga@chatroom MODE #h -o+o olga :reg"
        assert reg.reply(GiveRoom("#h", "olga")) == OK
        assert gus.line() == ":reg!reg@chatroom MODE #h -o+o reg :olga"
        olga.send("PART #h")
        assert gus.line() == ":olga!olga@chatroom PART :#h"
        assert gus.line() == ":olga!olga@chatroom MODE #h -o+o olga :reg"  # (to the member there longest)
        gus.send("PART #h", "KICK #h reg")  # (not on the channel: its 442, not reg's 441)
        assert gus.until("442")[-2:] == [
            ":gus!gus@chatroom PART :#h",
            ":chatroom 442 gus #h :You're not on that channel",
        ]
    finally:
        reg.close()


def test_a_channel_joined_from_another_device_comes_with_its_topic_and_names(irc_server, irc):
    """As after a JOIN of its own: an IRC client learns who is on a channel from NAMES alone
    (it showed one joined at the user's phone with nobody on it)."""
    from chatroom.room_frames import Join, SetTopic

    owner = hello_peer(irc_server.address, 4, "olga", "pw")
    assert owner.reply(Join("#t")) == OK and owner.reply(SetTopic("#t", "plans")) == OK
    hello_peer(irc_server.address, 4, "alice", "pw").close()
    alice = irc()
    alice.send("PASS pw")
    alice.register("alice", "pw")
    phone = Peer(irc_server.address)
    try:
        assert phone.reply(Hello(4)) == OK and phone.reply(Authenticate("alice", "pw")) == OK
        assert phone.reply(Join("#t")) == OK
        assert alice.until("366") == [
            ":alice!alice@chatroom JOIN :#t",
            ":chatroom 332 alice #t :plans",
            ":chatroom 353 alice = #t :alice @olga",
            ":chatroom 366 alice #t :End of /NAMES list",
        ]
    finally:
        phone.close()
        owner.close()


def test_what_clients_ask_of_the_server_itself_is_answered_not_unknown(irc):
    from chatroom import __version__

    ann = irc()
    welcome = ann.register("ann")
    assert f":chatroom 004 ann chatroom chatroom-{__version__} i :io" in welcome
    ann.send("VERSION")
    assert ann.line() == f":chatroom 351 ann chatroom-{__version__} chatroom :the chatroom server's IRC port"
    assert ann.line() == next(line for line in welcome if " 005 " in line)  # (what 005 said at registration)
    ann.send("TIME")
    assert re.fullmatch(r":chatroom 391 ann chatroom :\w+day \w+ \d\d \d{4} -- \d\d:\d\d:\d\d \+00:00", ann.line())
    ann.send("INFO", "ADMIN", "STATS u", "STATS m", "STATS", "LINKS")
    info = ann.until("374")
    assert info[0] == f":chatroom 371 ann :chatroom-{__version__}: a chat server of users, rooms and direct messages"
    assert info[-1] == ":chatroom 374 ann :End of INFO list"
    assert ann.line() == ":chatroom 423 ann chatroom :No administrative info available"
    assert ann.line().startswith(":chatroom 242 ann :Server Up 0 days 0:")
    assert ann.line() == ":chatroom 219 ann u :End of /STATS report"
    assert ann.line() == ":chatroom 219 ann m :End of /STATS report"
    assert ann.line() == ":chatroom 461 ann STATS :Not enough parameters"
    assert ann.until("365") == [
        ":chatroom 364 ann chatroom chatroom :0 chatroom",
        ":chatroom 365 ann * :End of /LINKS list",
    ]
    ann.send("WHOWAS bob,carl", "WHOWAS", "OPER ann secret", "OPER ann", "KILL bob :bye", "FROB")
    assert [ann.line() for _ in range(8)] == [
        ":chatroom 406 ann bob :There was no such nickname",
        ":chatroom 406 ann carl :There was no such nickname",
        ":chatroom 369 ann bob,carl :End of WHOWAS",
        ":chatroom 431 ann :No nickname given",
        ":chatroom 491 ann :No O-lines for your host (this server has no operators)",
        ":chatroom 461 ann OPER :Not enough parameters",
        ":chatroom 481 ann :Permission Denied- You're not an IRC operator",
        ":chatroom 421 ann FROB :Unknown command",
    ]
    ann.send("WALLOPS :all of you", "USERS", "SUMMON bob", "HELP", "HELP privmsg")
    assert [ann.line() for _ in range(3)] == [
        ":chatroom 481 ann :Permission Denied- You're not an IRC operator",
        ":chatroom 446 ann :USERS has been disabled (WHO and LUSERS say who is on)",
        ":chatroom 445 ann :SUMMON has been disabled",
    ]
    start, commands, rooms, end = [ann.line() for _ in range(4)]
    assert start == ":chatroom 704 ann index :chatroom's IRC port answers these commands:"
    assert {"PRIVMSG", "JOIN", "HELP", "WHOIS", "CHATHISTORY"} <= set(commands.split(" :", 1)[1].split())
    assert (rooms, end) == (
        ":chatroom 705 ann index :Rooms are its channels, and its users its nicks.",
        ":chatroom 706 ann index :End of /HELPOP",
    )
    assert ann.line() == ":chatroom 524 ann privmsg :No help available on this topic"


def test_a_flood_from_one_irc_client_leaves_a_neighbour_unhurt(irc_server, irc):
    import time

    flooder = irc()
    flooder.register("flooder")
    lines = "".join(f"JOIN #r{n % 50}\r\nPRIVMSG nobody{n} :x\r\nNAMES #r{n % 50}\r\n" for n in range(5000))
    flooder.sock.setblocking(False)
    alice, bob = logged_in(irc_server.address, "alice"), logged_in(irc_server.address, "bob")
    try:
        flood = lines.encode()
        slowest = 0.0
        for seq in range(300):
            try:
                sent = flooder.sock.send(flood)  # (as much as the server takes; it is read 64 lines a turn)
                flood = flood[sent:]
            except BlockingIOError:
                pass
            started = time.monotonic()
            assert alice.request(SendTo("bob", str(seq))) == OK
            slowest = max(slowest, time.monotonic() - started)
        assert [int(bob.next_event().text) for _ in range(300)] == list(range(300))
        assert slowest < 0.5, f"a neighbour waited {slowest:.3f} s behind the flood"
    finally:
        alice.close()
        bob.close()


def test_sasl_plain_logs_a_registered_name_in(irc_server, irc):
    import base64

    owner = hello_peer(irc_server.address, 4, "carol", "secret")
    owner.close()

    def plain(password):
        return base64.b64encode(f"\0carol\0{password}".encode()).decode()

    client = irc()
    client.send("CAP LS 302", "NICK guest", "USER g 0 * :G", "CAP REQ :sasl chathistory-nope", "CAP REQ :sasl")
    assert [client.line() for _ in range(3)] == [
        ":chatroom CAP * LS :sasl=PLAIN server-time message-tags echo-message batch labeled-response account-tag"
        " away-notify extended-join invite-notify multi-prefix userhost-in-names draft/chathistory draft/read-marker",
        ":chatroom CAP guest NAK :sasl chathistory-nope",
        ":chatroom CAP guest ACK :sasl",
    ]
    client.send("AUTHENTICATE SCRAM-SHA-256")
    assert client.line() == ":chatroom 908 guest PLAIN :are available SASL mechanisms"
    assert client.line() == ":chatroom 904 guest :SASL authentication failed"
    client.send("AUTHENTICATE PLAIN")
    assert client.line() == "AUTHENTICATE :+"
    client.send(f"AUTHENTICATE {plain('wrong')}")
    assert client.line() == ":chatroom 904 guest :SASL authentication failed"
    client.send("AUTHENTICATE PLAIN")
    assert client.line() == "AUTHENTICATE :+"
    client.send("AUTHENTICATE *", "AUTHENTICATE PLAIN", "AUTHENTICATE *")  # (given up before, and on the way)
    assert [client.line() for _ in range(3)] == [
        ":chatroom 906 guest :SASL authentication aborted",
        "AUTHENTICATE :+",
        ":chatroom 906 guest :SASL authentication aborted",
    ]
    client.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + "A" * 401)  # (a chunk is 400 bytes at most)
    assert [client.line() for _ in range(2)] == ["AUTHENTICATE :+", ":chatroom 905 guest :SASL message too long"]
    client.send("AUTHENTICATE PLAIN", *["AUTHENTICATE " + "A" * 400] * 5)  # (a response of four at most)
    assert [client.line() for _ in range(2)] == ["AUTHENTICATE :+", ":chatroom 905 guest :SASL message too long"]
    # A response of exactly 400 bytes, ended by "+" (an authorization identity of 287 bytes and
    # "\0carol\0secret" are 300 bytes, 400 in Base64); the answer comes only then.
    chunked = base64.b64encode(("a" * 287 + "\0carol\0secret").encode()).decode()
    assert len(chunked) == 400
    client.send("AUTHENTICATE PLAIN", f"AUTHENTICATE {chunked}", "PING :between", "AUTHENTICATE +")
    assert client.line() == "AUTHENTICATE :+"
    assert client.line() == ":chatroom PONG chatroom :between"  # (nothing for the chunk)
    assert client.line() == ":chatroom 900 guest carol!carol@chatroom carol :You are now logged in as carol"
    assert client.line() == ":chatroom 903 guest :SASL authentication successful"
    client.send("CAP END")
    assert client.line() == ":chatroom 001 carol :Welcome to chatroom, carol"  # (the account's name)
    # Registration ends an exchange left half way: aborted, and the client registers without it.
    halfway = irc()
    halfway.send("CAP LS 302", "CAP REQ :sasl", "NICK dora", "USER d 0 * :D", "AUTHENTICATE PLAIN")
    assert [halfway.line() for _ in range(3)][1:] == [":chatroom CAP * ACK :sasl", "AUTHENTICATE :+"]
    halfway.send("CAP END")
    assert halfway.line() == ":chatroom 906 dora :SASL authentication aborted"
    assert halfway.line() == ":chatroom 001 dora :Welcome to chatroom, dora"


def test_messages_kept_for_a_sasl_login_come_after_the_welcome_however_late_it_comes(irc_server, irc):
    """The messages kept for a user come a page at a time, each once the one before has gone
    out; with SASL the login is before the welcome, which the client may put off: the pages
    wait for it, and the server goes on answering meanwhile."""

    from chatroom.protocol import Response, Status
    from chatroom.server.account_rules import STORED_PAGE

    for name in ("rita", "carol"):
        hello_peer(irc_server.address, 4, name, "pw").close()
    bob = hello_peer(irc_server.address, 3, "bob")
    kept = [f"kept {n}" for n in range(STORED_PAGE + 3)]  # (more than the login's page)
    try:
        for text in kept:
            assert bob.reply(SendTo("rita", text)) == Response(Status.STORED)
        client = irc()
        client.log_in_by_sasl("rita", "pw")
        assert bob.reply(SendTo("rita", "live")) == OK
        # By the time this is STORED the store has written what was asked of it before: a
        # hand-out begun before the welcome would be at its second page.
        assert bob.reply(SendTo("carol", "later")) == Response(Status.STORED)
        client.send("PING :before")
        assert client.until("PONG") == [":chatroom PONG chatroom :before"]
        client.send("CAP END")
        client.until("422")
        assert [client.line() for _ in range(len(kept) + 1)] == [
            *(f":bob!bob@chatroom PRIVMSG rita :{text}" for text in kept),
            ":bob!bob@chatroom PRIVMSG rita :live",
        ]
    finally:
        bob.close()


def test_messages_kept_for_a_sasl_login_that_ends_before_its_welcome_stay_kept(irc_server, irc):
    """(None of them went out: the next login has every one.)"""

    from chatroom.protocol import Response, Status, StoredMessage
    from chatroom.server.account_rules import STORED_PAGE

    for name in ("rita", "carol"):
        hello_peer(irc_server.address, 4, name, "pw").close()
    bob = hello_peer(irc_server.address, 3, "bob")
    kept = [f"kept {n}" for n in range(STORED_PAGE + 3)]
    try:
        for text in kept:
            assert bob.reply(SendTo("rita", text)) == Response(Status.STORED)
        client = irc()
        client.log_in_by_sasl("rita", "pw")
        assert bob.reply(SendTo("carol", "later")) == Response(Status.STORED)  # (the store has caught up)
        client.close()
        eventually(lambda: "rita" not in bob.reply(ListUsers()).names, what="rita gone")
        again = Peer(irc_server.address)
        try:
            assert again.reply(Hello(4)) == OK and again.reply(Authenticate("rita", "pw")) == OK
            assert [m.text for m in again.pushes_of(StoredMessage, len(kept))] == kept
        finally:
            again.close()
    finally:
        bob.close()


def test_a_sasl_login_that_never_ends_its_registration_is_dropped_once_what_waits_fills_its_queue(
    server_process,
):
    """(What comes for it waits for the welcome, within the bound of what a client's queue holds.)"""

    from chatroom.protocol import Response, Status

    port = free_port()
    server = server_process("--irc", f"127.0.0.1:{port}", "--sendq", "20000")
    server.wait_for_log(f"IRC on 127.0.0.1:{port}")
    hello_peer(server.address, 4, "rita", "pw").close()
    bob = hello_peer(server.address, 3, "bob")
    client = IrcPeer(("127.0.0.1", port))
    try:
        client.log_in_by_sasl("rita", "pw")
        for _ in range(100):  # (40 of them fill 20,000 bytes)
            if bob.reply(SendTo("rita", "x" * 500)) != OK:
                break
        assert bob.reply(SendTo("rita", "after")) == Response(Status.STORED)  # (gone: kept for her)
        with gevent.Timeout(WAIT):
            assert client.sock.recv(65536) == b""
        server.wait_for_log("is not reading; disconnecting")
    finally:
        client.close()
        bob.close()


def test_server_time_message_ids_and_echo_when_asked_for(irc_server, irc):
    import re

    alice = irc()
    alice.send("CAP LS 302", "CAP REQ :server-time message-tags echo-message", "NICK alice", "USER a 0 * :A")
    alice.send("CAP END")
    alice.until("422")
    bob = hello_peer(irc_server.address, 4, "bob")
    try:
        assert bob.reply(SendTo("alice", "timed")) == OK
        line = alice.line()
        assert re.fullmatch(
            r"@msgid=\d+;time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z :bob!bob@chatroom PRIVMSG alice :timed", line
        ), line
        alice.send("PRIVMSG bob :echoed", "TAGMSG bob")
        echo = alice.line()
        # The echo is the message as bob has it: its id and its time (IRCv3 echo-message).
        [got] = bob.pushes_of(DirectMessage, 1)
        assert echo == f"@msgid={got.id};time={irc_time(got.time_ms)} :alice!alice@chatroom PRIVMSG bob :echoed"
    finally:
        bob.close()


def _irc_with_idle_timeout(server_process, seconds: str):
    """A server whose --idle-timeout is seconds, and an IRC client of it (for the caller to close)."""
    port = free_port()
    server = server_process("--irc", f"127.0.0.1:{port}", "--idle-timeout", seconds)
    server.wait_for_log(f"IRC on 127.0.0.1:{port}")
    return server, IrcPeer(("127.0.0.1", port))


def test_the_ping_comes_after_the_idle_timeout_of_silence_not_before_nor_at_parking(server_process):
    # An --idle-timeout under the second after which a quiet connection parks: the PING must
    # not wait for the parking. A client that keeps talking for longer is never pinged.
    _, client = _irc_with_idle_timeout(server_process, "0.4")
    try:
        client.register("talker")
        for round_number in range(8):  # 1.6 s of talk, a line every 0.2 s
            client.send(f"PING :{round_number}")
            assert client.line() == f":chatroom PONG chatroom :{round_number}"
            gevent.sleep(0.2)
        said = time.monotonic()  # (before the server reads the line: its silence starts later)
        client.send("PING :last")
        assert client.line() == ":chatroom PONG chatroom :last"
        with gevent.Timeout(WAIT):
            assert client.line() == "PING :chatroom"
        assert 0.4 <= time.monotonic() - said < 0.9
    finally:
        client.close()


def test_lines_after_a_quit_go_unanswered(irc):
    alice = irc()
    alice.register("alice")
    alice.send("QUIT :bye", "PING :after", "PRIVMSG alice :after")
    assert alice.line().startswith("ERROR ")
    with gevent.Timeout(WAIT):
        assert alice.sock.recv(100) == b""  # closed, nothing answered after the QUIT


def test_a_connection_the_server_ends_is_told_why_first(server_process):
    server, silent = _irc_with_idle_timeout(server_process, "1")
    talker = IrcPeer(silent.sock.getpeername())
    try:
        talker.register("talker")
        with gevent.Timeout(WAIT):  # a connection that never says a word (not pinged), after --idle-timeout
            assert silent.line() == "ERROR :Closing link: Registration timed out"
            assert silent.sock.recv(100) == b""
        talker.send("PING :still here")
        assert talker.until("PONG")[-1] == ":chatroom PONG chatroom :still here"  # (after a PING of its own)
        server.signal(signal.SIGTERM)
        with gevent.Timeout(WAIT):
            assert talker.line() == "ERROR :Closing link: Server shutting down"
            assert talker.sock.recv(100) == b""
        assert server.wait() == 0
    finally:
        silent.close()
        talker.close()


def test_a_quiet_client_is_pinged_and_one_that_never_answers_is_let_go(server_process):
    server, client = _irc_with_idle_timeout(server_process, "1")
    try:
        client.register("quiet")
        assert client.line() == "PING :chatroom"  # (a second of silence)
        client.send("PONG :chatroom")
        assert client.line() == "PING :chatroom"  # (and another: it stays, as long as it answers)
        with gevent.Timeout(WAIT):
            assert client.line() == "ERROR :Closing link: Ping timeout"  # no answer this time: let go
            assert client.sock.recv(100) == b""
        watcher = logged_in(server.address, "watcher")
        try:
            eventually(lambda: watcher.request(ListUsers()) == UserList(("watcher",)))
        finally:
            watcher.close()
    finally:
        client.close()


def test_an_invite_past_the_invitations_a_channel_may_hold_says_its_list_is_full(server_process):
    port = free_port()
    server = server_process("--irc", f"127.0.0.1:{port}", "--members-per-room", "2")
    server.wait_for_log(f"IRC on 127.0.0.1:{port}")
    hello_peer(server.address, 1, "olga", "pw").close()  # (a registered name owns the channel it makes)
    owner = IrcPeer(("127.0.0.1", port))
    try:
        owner.register("olga", "pw")
        owner.send("JOIN #club")
        owner.until("366")
        owner.send("INVITE guest #club", "INVITE other #club", "INVITE third #club")
        assert [owner.line() for _ in range(3)] == [
            ":chatroom 341 olga guest :#club",
            ":chatroom 341 olga other :#club",
            ":chatroom 478 olga #club I :Channel invite list is full",
        ]
    finally:
        owner.close()
