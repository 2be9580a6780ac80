"""The IRC port's pieces without a network: reading lines within IRC's limits (fuzzed),
chatroom names as nicknames and channels, one to one, and the lines a room's message becomes."""

from dataclasses import dataclass, field

import irctokens
from hypothesis import example, given
from hypothesis import strategies as st

from chatroom.codec import encode
from chatroom.protocol import DirectMessage, is_valid_username
from chatroom.room_frames import EventKind, RoomEvent, RoomMessage
from chatroom.server.irc.client import CAPABILITIES
from chatroom.server.irc.lines import (
    MAX_RECEIVED,
    LineReader,
    NotUtf8,
    Privmsg,
    TooLong,
    Unreadable,
    encode_line,
    split_text,
    with_tags,
)
from chatroom.server.irc.marker_times import MarkerTimes
from chatroom.server.irc.nicks import to_channel, to_name, to_nick, to_room, to_room_among
from chatroom.server.irc.tags import id_of_msgid, irc_time, tagged, tags_for
from chatroom.server.irc.translate import irc_frame, to_irc
from chatroom.server.irc.welcome import Unwelcomed, welcomed
from chatroom.server.irc.writing import Writing, writing_for


def test_lines_end_with_crlf_or_lf_and_empty_ones_are_skipped():
    reader = LineReader()
    lines = reader.receive_data(b"NICK alice\r\nUSER a 0 * :Alice A\n\r\n   \nPRIV")
    assert [(line.command, line.params) for line in lines] == [
        ("NICK", ["alice"]),
        ("USER", ["a", "0", "*", "Alice A"]),
    ]
    assert reader.pending == 4
    [line] = reader.receive_data(b"MSG bob :hi there\r\n")
    assert (line.command, line.params) == ("PRIVMSG", ["bob", "hi there"])


def test_a_line_over_512_bytes_is_refused_whole_and_the_next_one_read():
    reader = LineReader()
    assert reader.receive_data(b"PRIVMSG bob :" + b"x" * 498 + b"\r\n") == [TooLong()]  # 512 + 1 bytes
    [fits] = reader.receive_data(b"PRIVMSG bob :" + b"x" * 497 + b"\n")  # 512 with the CR it lacks
    assert len(fits.params[1]) == 497
    # Far longer, in pieces: refused once, never held whole, and the line after it is read.
    assert reader.receive_data(b"PRIVMSG bob :" + b"y" * 20_000) == [TooLong()]
    assert reader.pending == 0
    assert reader.receive_data(b"y" * 20_000) == []
    [after] = reader.receive_data(b"y\r\nPING :x\r\n")
    assert after.command == "PING"


def test_tags_have_room_of_their_own():
    reader = LineReader()
    tags = b"@label=" + b"a" * 8000
    [line] = reader.receive_data(tags + b" PRIVMSG bob :" + b"x" * 400 + b"\r\n")
    assert line.tags == {"label": "a" * 8000}
    assert reader.receive_data(b"@label=" + b"a" * 8200 + b" PING :x\r\n") == [TooLong()]


def test_what_is_not_an_irc_message_is_refused_as_such():
    reader = LineReader()
    assert reader.receive_data(b"PRIVMSG bob :a\x00b\r\n:source\r\n") == [Unreadable()] * 2


def test_a_line_that_is_not_utf8_is_refused_with_its_command_and_label_where_they_read():
    reader = LineReader()
    assert reader.receive_data(
        b"PRIVMSG bob :\xff\r\nPRIVMSG #r x :\xe9\r\n@label=a\\sb :me TOPIC #r :\xe9\r\n"
        b"@label=\xff NOTICE b :\xff\r\n\xff\xfe PRIVMSG\r\n005 \xff\r\n"
    ) == [
        NotUtf8("PRIVMSG"),
        NotUtf8("PRIVMSG"),
        NotUtf8("TOPIC", {"label": "a b"}),
        NotUtf8("NOTICE"),
        NotUtf8("*"),
        NotUtf8("005"),
    ]


def test_a_message_to_one_target_is_read_with_its_text_as_sent():
    [message] = LineReader().receive_data(b"PRIVMSG bob :h\xc3\xa9 : there\r\n")
    assert type(message) is Privmsg
    assert (message.target, message.text, message.raw, message.tags) == (
        "bob",
        "hé : there",
        b"h\xc3\xa9 : there",
        None,
    )
    [tagged] = LineReader().receive_data(b"@label=x PRIVMSG #team :hi\r\n")
    assert (tagged.tags, tagged.params) == ({"label": "x"}, ["#team", "hi"])
    assert LineReader().receive_data(b"PRIVMSG bob :\xff\r\n") == [NotUtf8("PRIVMSG")]


@given(
    st.text(st.characters(blacklist_characters="\x00\r\n ,", blacklist_categories=("Cs",)), min_size=1, max_size=20),
    st.text(st.characters(blacklist_characters="\x00\r\n", blacklist_categories=("Cs",)), max_size=200),
    st.sampled_from(["", "@a=b;c "]),
)
@example(":x", "text", "")  # (the whole of ":x :text" is the one parameter)
def test_a_message_read_at_once_reads_as_irctokens_reads_it(target, text, tags):
    line = f"{tags}PRIVMSG {target} :{text}"
    [message] = LineReader().receive_data(line.encode() + b"\r\n")
    expected = irctokens.tokenise(line)
    assert (message.command, message.params, message.tags) == (expected.command, expected.params, expected.tags)


@given(st.lists(st.binary(max_size=3000), max_size=20))
def test_any_bytes_give_messages_or_refusals_and_never_hold_more_than_a_line(chunks):
    reader = LineReader()
    for chunk in chunks:
        for item in reader.receive_data(chunk):
            assert isinstance(item, (irctokens.Line, Privmsg, TooLong, Unreadable, NotUtf8))
        assert reader.pending <= MAX_RECEIVED


def test_lines_are_built_with_a_trailing_parameter_and_long_text_is_cut_for_them():
    assert encode_line("PRIVMSG", "bob", "hi there", source="alice!alice@chatroom") == (
        b":alice!alice@chatroom PRIVMSG bob :hi there\r\n"
    )
    assert split_text("one\ntwo\n\nthree", 100) == ["one", "two", " ", "three"]
    pieces = split_text("word " * 50 + "é" * 100, 60)
    assert all(len(piece.encode()) <= 60 for piece in pieces)
    assert "".join(pieces).replace(" ", "") == ("word" * 50 + "é" * 100)


def test_what_would_end_a_line_in_a_topic_away_or_message_is_never_sent_as_one():
    """A topic set (or an away message) with CR LF before our protocol refused them there, or a
    message holding a NUL: each is one line, never one of the sender's making."""
    topic = encode(RoomEvent("#team", EventKind.TOPIC, "bob", "evil\r\n:alice!alice@chatroom PRIVMSG carol :hi\0"))
    assert to_irc([topic], Reader("carol")) == (
        b":bob!bob@chatroom TOPIC #team :evil  :alice!alice@chatroom PRIVMSG carol :hi \r\n"
    )
    direct = encode(DirectMessage("bob", 1, 1_700_000_000_000, "a\0b"))
    room = encode(RoomMessage("#team", "bob", 2, 1_700_000_000_000, "c\0d"))
    assert to_irc([direct, room], Reader("carol")) == (
        b":bob!bob@chatroom PRIVMSG carol :a b\r\n:bob!bob@chatroom PRIVMSG #team :c d\r\n"
    )


def test_names_that_are_nicknames_stay_and_the_others_are_encoded_one_to_one():
    assert to_nick("bob") == "bob" and to_nick("Bob-2") == "Bob-2"
    for name in ("日本", "1abc", "a,b", "x.y", "a*b", "a!b", "a@b", "`tick"):
        nick = to_nick(name)
        assert nick.startswith("`") and nick.isascii() and to_name(nick) == name
    assert to_name("`") is None and to_name("`!!") is None and to_name("has space") is None
    assert to_channel("#team") == "#team" and to_room(to_channel("#a,b")) == "#a,b"
    assert to_room("team") is None


def test_a_channel_in_another_case_is_the_room_joined_under_it():
    joined = {"#team", "#Straße"}
    assert to_room_among("#TEAM", joined) == "#team" and to_room_among("#team", joined) == "#team"
    assert to_room_among("#STRASSE", joined) == "#Straße"  # (case folded, as rooms are told apart)
    assert to_room_among("#other", joined) == "#other" and to_room_among("team", joined) is None


@given(st.text(min_size=1, max_size=20).filter(is_valid_username), st.text(min_size=1, max_size=20))
def test_every_name_has_one_nickname_that_leads_back_to_it(name, other):
    nick = to_nick(name)
    assert to_name(nick) == name
    if is_valid_username(other) and other != name:
        assert to_nick(other) != nick


@dataclass
class Reader:
    """Who IRC lines are for, as translate reads it (the IRC client's side)."""

    nick: str
    caps: set[str] = field(default_factory=set)
    away_known: set[str] = field(default_factory=set)
    echo_labels: dict[str, list[str]] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)
    marker_times: MarkerTimes = field(default_factory=MarkerTimes)
    accounts: set[str] = field(default_factory=set)  # the registered names
    last_quit: str | None = None
    own_join: str | None = None
    away_shown: bool = False
    joined_at_other_devices: list[str] = field(default_factory=list)  # (see joined_elsewhere)
    unwelcomed: Unwelcomed | None = None  # (welcomed, unless given one)

    def is_account(self, name: str) -> bool:
        return name in self.accounts

    def joined_elsewhere(self, room: str) -> None:
        self.joined_at_other_devices.append(room)

    @property
    def writing(self) -> Writing | None:
        return writing_for(self.nick, self.caps) if self.unwelcomed is None else None

    @writing.setter
    def writing(self, _writing) -> None:
        pass  # (it follows the nick and caps)


def test_a_rooms_message_reads_the_same_for_every_member_but_its_sender():
    said = encode(RoomMessage("#team", "bob", 7, 1_700_000_000_000, "hi all"))
    line = b":bob!bob@chatroom PRIVMSG #team :hi all\r\n"
    assert to_irc([said], Reader("alice")) == to_irc([said], Reader("carol")) == line
    assert to_irc([said], Reader("bob")) == b""  # (no echo asked for)
    assert to_irc([said], Reader("bob", {"echo-message"})) == line
    stamped = b"@time=2023-11-14T22:13:20.000Z " + line
    assert to_irc([said], Reader("dave", {"server-time"})) == to_irc([said], Reader("erin", {"server-time"})) == stamped
    tagged_line = b"@msgid=7-1700000000000-#team;" + stamped[1:]
    assert to_irc([said], Reader("fred", {"server-time", "message-tags"})) == tagged_line
    marking = Reader("gina", {"draft/read-marker"})
    assert to_irc([said], marking) == line and marking.marker_times.time_of("#team", 7) == 1_700_000_000_000
    # Frames queued together, and a text of two lines (two PRIVMSGs)
    two_lines = encode(RoomMessage("#team", "bob", 8, 1_700_000_000_000, "one\ntwo"))
    assert to_irc([said + two_lines + said], Reader("alice")) == (
        line + b":bob!bob@chatroom PRIVMSG #team :one\r\n:bob!bob@chatroom PRIVMSG #team :two\r\n" + line
    )


def test_a_rooms_event_reads_the_same_for_every_member_it_is_not_about():
    joined = encode(RoomEvent("#team", EventKind.JOINED, "bob"))
    line = b":bob!bob@chatroom JOIN :#team\r\n"
    assert to_irc([joined], Reader("alice")) == to_irc([joined], Reader("carol", {"server-time"})) == line
    bob = Reader("bob", {"draft/read-marker"})  # (joined from another of bob's devices)
    assert to_irc([joined], bob) == line + b":chatroom MARKREAD #team *\r\n" and bob.channels == {"#team"}
    assert bob.joined_at_other_devices == ["#team"]  # (its topic and names to follow)
    assert to_irc([joined], bob) == b"" and bob.joined_at_other_devices == ["#team"]  # joined already
    removed = encode(RoomEvent("#team", EventKind.REMOVED, "alice", "bob"))
    kick = b":alice!alice@chatroom KICK #team bob :alice\r\n"
    assert to_irc([removed], Reader("carol")) == to_irc([removed], Reader("alice")) == kick
    assert to_irc([removed], bob) == kick and bob.channels == set()
    invited = encode(RoomEvent("#team", EventKind.INVITED, "alice", "dave"))
    assert to_irc([invited], Reader("carol")) == b""
    assert to_irc([invited], Reader("dave")) == b":alice!alice@chatroom INVITE dave :#team\r\n"
    assert to_irc([invited + joined], Reader("carol")) == line  # (queued together)


def test_a_rooms_msgid_is_no_other_rooms_nor_that_of_a_room_of_its_name_made_again():
    """IRCv3 message-ids: no other message on the network may ever share a msgid. A room's ids
    count up in that room alone, and from 1 again in a room made again after its last member
    left: its msgid carries its time and channel, and reads back as its id."""
    reader = Reader("alice", {"message-tags"})
    said = [
        RoomMessage("#team", "bob", 1, 1_700_000_000_000, "a"),
        RoomMessage("#other", "bob", 1, 1_700_000_000_000, "b"),  # (the same id, the same moment)
        RoomMessage("#team", "bob", 1, 1_700_000_500_000, "c"),  # (#team made again since)
        RoomMessage("#caf\u00e9", "bob", 1, 1_700_000_000_000, "d"),
    ]
    lines = to_irc([encode(message) for message in said], reader).decode().splitlines()
    msgids = [line.split(" ", 1)[0].removeprefix("@msgid=") for line in lines]
    assert msgids[:3] == ["1-1700000000000-#team", "1-1700000000000-#other", "1-1700000500000-#team"]
    assert msgids[3] == "1-1700000000000-" + to_channel("#caf\u00e9") and len(set(msgids)) == 4
    assert [id_of_msgid(msgid) for msgid in msgids] == [1, 1, 1, 1]
    assert id_of_msgid("1883931946161012736") == 1883931946161012736  # (a direct message's)
    ids = [id_of_msgid(bad) for bad in ("", "-1", "x", "\u00b2", "1-", "1-2", "1-2-team", "1-x-#team", "1-2-# x")]
    assert ids == [None] * 9


@given(st.dictionaries(st.sampled_from(["label", "msgid", "time", "account"]), st.text(max_size=20), max_size=4))
def test_tags_are_written_as_irctokens_writes_them(tags):
    line = with_tags(b"PING x\r\n", tags) if tags else b"PING x\r\n"
    assert line == (irctokens.build("PING", ["x"], None, tags or None).format() + "\r\n").encode()


def test_a_moment_is_written_to_the_millisecond_in_utc():
    assert irc_time(1_700_000_000_999) == "2023-11-14T22:13:20.999Z"
    assert irc_time(1_700_000_001_000) == "2023-11-14T22:13:21.000Z"


@given(
    st.sets(st.sampled_from(["server-time", "message-tags", "account-tag", "echo-message"])),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    st.integers(0, 2**41),
    st.sampled_from(["bob", "we;ird", "日本"]),
)
def test_a_message_line_is_tagged_as_its_tags_are_written_anywhere(caps, message_id, time_ms, sender):
    """The relay's own tag writer (one line per message and reader) writes what tags_for and
    with_tags would."""
    reader = Reader("alice", caps, accounts={"we;ird", "日本"})
    line = b":x!x@chatroom PRIVMSG alice :hi\r\n"
    tags = tags_for(reader, time_ms, message_id, sender)
    assert tagged(line, reader, message_id, time_ms, sender.encode()) == (with_tags(line, tags) if tags else line)


def test_a_list_in_lines_fills_each_within_its_room_and_keeps_every_word():
    from chatroom.server.irc.lines import in_lines

    words = [f"#room{number}" for number in range(100)] + ["#`" + "a" * 120, "#日本"]
    parts = in_lines(words, 60)
    assert " ".join(parts).split(" ") == words
    assert all(len(part.encode()) <= 60 for part in parts if " " in part)  # (a word alone may be longer)
    # (and none could have taken the next word)
    assert all(len(f"{part} {parts[index + 1].split(' ')[0]}".encode()) > 60 for index, part in enumerate(parts[:-1]))
    assert in_lines([], 60) == [] and in_lines(["a", "b"], 3) == ["a b"]


NAMES = st.sampled_from(["bob", "alice", "b\u00e9b", "x" * 20, "\u65e5" * 20, "a,b"])
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=400) | st.sampled_from(["\u00e9" * 500, "a\r\nb", "\0"])


def _frames_to_irc():
    """Any frame a reader's outbox may hand the port, with any text in it."""
    from chatroom.device_frames import OwnMessage, PresenceState, PresenceStatus

    moment, rooms = st.integers(0, 2**63 - 1), NAMES.map("#".__add__)
    texts_of_events = st.sampled_from([EventKind.TOPIC, EventKind.PARTED])  # (the others' details are names)
    return st.one_of(
        st.builds(DirectMessage, NAMES, moment, moment, ANY_TEXT.filter(bool)),
        st.builds(RoomMessage, rooms, NAMES, moment, moment, ANY_TEXT.filter(bool)),
        st.builds(RoomEvent, rooms, st.sampled_from(EventKind), NAMES, NAMES),
        st.builds(RoomEvent, rooms, texts_of_events, NAMES, ANY_TEXT),
        st.builds(OwnMessage, NAMES | rooms, moment, moment, ANY_TEXT.filter(bool)),
        st.builds(
            lambda changes: PresenceStatus(tuple(changes)),
            st.lists(st.tuples(NAMES, st.sampled_from(PresenceState), ANY_TEXT), min_size=1, max_size=3),
        ),
    )


@given(st.lists(_frames_to_irc(), min_size=1, max_size=6), st.sets(st.sampled_from(CAPABILITIES)))
def test_whatever_a_frame_holds_the_port_writes_well_formed_lines(messages, caps):
    """Each line one IRC line: CR LF at its end only, no NUL, within 512 bytes after its tags,
    read back by irctokens as a command."""
    for nick in ("alice", "bob"):
        reader = Reader(nick, caps, channels={"#bob", "#alice"}, accounts={"bob"})
        written = to_irc([b"".join(map(encode, messages))], reader)
        assert written == b"" or written.endswith(b"\r\n")
        for line in written.split(b"\r\n")[:-1]:
            assert b"\r" not in line and b"\n" not in line and b"\0" not in line
            without_tags = line.split(b" ", 1)[1] if line.startswith(b"@") else line
            assert len(without_tags) + 2 <= 512
            assert irctokens.tokenise(line.decode()).command


def test_what_comes_before_the_welcome_follows_it_less_what_the_welcome_told():
    """(SASL logs a user in before registration ends: see server/irc/welcome.py.)"""
    reader = Reader("alice", {"invite-notify"}, unwelcomed=Unwelcomed())
    said = [
        encode(DirectMessage("bob", 1, 1_700_000_000_000, "psst")),
        encode(RoomMessage("#team", "bob", 5, 1_700_000_000_000, "replayed")),
        encode(RoomEvent("#team", EventKind.JOINED, "carol")),  # (shown by the JOIN's NAMES)
        encode(RoomEvent("#team", EventKind.INVITED, "bob", "dave")),
        encode(RoomEvent("#other", EventKind.INVITED, "bob", "alice")),
        encode(RoomMessage("#team", "bob", 9, 1_700_000_000_001, "live")),
    ]
    assert to_irc([irc_frame(b"CAP ACK\r\n"), *said[:3]], reader) == b"CAP ACK\r\n"
    assert to_irc(said[3:], reader) == b""
    assert reader.unwelcomed is not None
    reader.unwelcomed.replayed_upto = {"#team": 5}  # (as the welcome joined it)
    reader.unwelcomed.kept = encode(DirectMessage("bob", 0, 1_600_000_000_000, "kept"))  # (as the login answered)
    welcome = welcomed(irc_frame(b"001\r\n"))
    later = encode(DirectMessage("bob", 2, 1_700_000_000_002, "later"))
    assert to_irc([welcome, later], reader) == (
        b"001\r\n:bob!bob@chatroom PRIVMSG alice :kept\r\n:bob!bob@chatroom PRIVMSG alice :psst\r\n"
        b":bob!bob@chatroom INVITE dave :#team\r\n:bob!bob@chatroom INVITE alice :#other\r\n"
        b":bob!bob@chatroom PRIVMSG #team :live\r\n:bob!bob@chatroom PRIVMSG alice :later\r\n"
    )
    assert reader.unwelcomed is None and to_irc([said[0]], reader) == b":bob!bob@chatroom PRIVMSG alice :psst\r\n"
