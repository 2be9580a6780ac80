"""The IRC port's compiled loops (server/irc/_speedups.c) give what the Python they stand in
for gives, for any bytes: each takes only the common case and hands the rest back."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chatroom.codec import encode, frame
from chatroom.protocol import DirectMessage, Incoming
from chatroom.room_frames import RoomMessage
from chatroom.server.connection import outbox as outboxes
from chatroom.server.connection.outbox import send_queued
from chatroom.server.connection.streams import TcpStream
from chatroom.server.irc import lines, translate
from chatroom.server.irc.lines import MAX_LINE
from chatroom.server.irc.session import IrcOutbox
from chatroom.server.irc.speedups import compiled
from chatroom.server.irc.translate import IRC_LINES, to_irc
from chatroom.server.irc.writing import writing_for
from chatroom.testing import WAIT, kernel_socket_pair
from tests.test_irc_lines import Reader

needs_compiled = pytest.mark.skipif(compiled is None, reason="built without a C compiler")

# Lines near the common shape, and the bytes that make a line leave it.
WORDS = st.sampled_from(
    [b"PRIVMSG ", b"PRIVMSG", b"privmsg ", b"NICK ", b"bob", b"b\xc3\xa9b", b":", b" :", b" ", b"  ", b"\r",
     b"\x00", b"\xff", b"@a=b ", b"hi there", b"x" * 200, b"\n", b"\r\n", b"#room", b","]
)  # fmt: skip


def read_both(data: bytes) -> tuple[list, list]:
    end = data.rfind(b"\n") + 1
    return lines._read_messages_compiled(data, end), lines.read_messages_in_python(data, end)


def _as_compared(items: list) -> list:
    return [(type(item).__name__, repr(item)) for item in items]


@needs_compiled
@given(st.lists(WORDS, max_size=40), st.binary(max_size=100))
@example([b"PRIVMSG ", b"bob", b" :", b"hi", b"\r\n", b"\r", b"\r\n", b"   \n"], b"")
@example([b"PRIVMSG ", b"b\xc3\xa9b", b" :", b"\xff", b"\n", b"PRIVMSG ", b" :", b"x\n"], b"")
def test_the_compiled_reader_reads_any_bytes_as_the_python_one(words, tail):
    compiled_items, python_items = read_both(b"".join(words) + tail)
    assert _as_compared(compiled_items) == _as_compared(python_items)


@needs_compiled
def test_the_compiled_reader_makes_the_messages_the_port_reads_and_refuses_what_it_refuses():
    long = b"PRIVMSG bob :" + b"x" * (lines.MAX_RECEIVED + 1) + b"\n"
    data = b"PRIVMSG bob :hi\r\nPRIVMSG bob :\xff\nPRIVMSG b c :x\n \r\n" + long + b"PRIVMSG #r :h\xc3\xa9"
    items, python_items = read_both(data)
    assert items[0] == lines.Privmsg(None, "bob", "hi", b"hi") and type(items[0]) is lines.Privmsg
    assert [type(item) for item in items[1:]] == [lines.NotUtf8, lines.irctokens.Line, lines.TooLong]
    assert _as_compared(items) == _as_compared(python_items)


def frames_from(kinds: list[tuple]) -> bytes:
    made = []
    for kind, sender, text, *moment in kinds:
        message_id = moment[0] if moment else 42  # (0: a message without an id, as one kept before ids)
        if kind == 0:
            made.append(encode(Incoming(sender, text)))
        elif kind == 1:
            made.append(encode(DirectMessage(sender, message_id, 1_700_000_000_000 + message_id, text)))
        elif kind == 2:
            made.append(frame(IRC_LINES, f":chatroom NOTICE x :{text}\r\n".encode()))
        else:
            made.append(encode(RoomMessage("#r", sender, 7, 1_700_000_000_000, text)))
    return b"".join(made)


SENDERS = st.sampled_from(["bob", "carol", "dave_", "b\u00e9b", "x" * 32])
TEXTS = st.sampled_from(["hi", "", "one\ntwo", "a\rb", "a\0b", "caf\u00e9", "y" * 480, "z" * 300])


CAPS = st.sets(st.sampled_from(["server-time", "message-tags", "account-tag", "echo-message"]))


@needs_compiled
@given(st.lists(st.tuples(st.integers(0, 3), SENDERS, TEXTS, st.integers(0, 1 << 40)), max_size=12), CAPS)
@example([(1, "bob", "hi", 0), (1, "b\u00e9b", "hi", 1 << 40)], {"server-time", "message-tags", "account-tag"})
@example([(1, name, "hi", 5) for name in ("bob", "bob", "carol", "carol", "bob")], {"account-tag"})
def test_the_compiled_translation_writes_the_lines_the_python_one_writes(kinds, caps):
    if "server-time" in caps:  # (an INCOMING has no time of its own: it is tagged with now's)
        kinds = [(kind or 1, *rest) for kind, *rest in kinds]
    chunks = [frames_from(kinds)]
    for nick in ("alice", "bob"):
        reader = Reader(nick, caps, accounts={"bob", "x" * 32})
        with_c = to_irc(chunks, reader)
        translate.compiled = None
        try:
            in_python = to_irc(chunks, reader)
        finally:
            translate.compiled = compiled
        assert with_c == in_python


@needs_compiled
def test_tags_written_in_c_are_pythons_for_any_moment_and_id():
    """(The compiled loop keeps the last second's text: moments in turn, in the same second and
    not, near the ends of what it writes; past the year 9999 Python writes them.)"""
    moments = [0, 999, 1_000, 59_999, 1_700_000_000_000, 1_700_000_000_007, 1_700_000_000_999, 1_700_000_001_000]
    moments += [951_782_400_000, 253_402_300_799_999, 253_402_300_800_000, 1_700_000_000_050]
    ids = [1, 9, 10, 12_345, 2**63 - 1, 2**64 - 1]
    chunks = [
        encode(DirectMessage("bob", ids[n % len(ids)], moment, f"at {moment}")) for n, moment in enumerate(moments)
    ]
    # (Ids across the eight-digit parts the compiled loop writes them in, and with zeros within.)
    more_ids = [99_999_999, 100_000_000, 100_000_001, 10**16 - 1, 10**16, 1_000_000_070_000_000_001, 10**19]
    chunks += [encode(DirectMessage("bob", message_id, 1_700_000_000_000, "id")) for message_id in more_ids]
    reader = Reader("alice", {"server-time", "message-tags", "account-tag"}, accounts={"bob"})
    with_c = to_irc(chunks, reader)
    translate.compiled = None
    try:
        assert with_c == to_irc(chunks, reader)
    finally:
        translate.compiled = compiled
    assert b"@account=bob;msgid=18446744073709551615;time=2023-11-14T22:13:20.007Z " in with_c
    assert b"@account=bob;msgid=10;time=2000-02-29T00:00:00.000Z " in with_c
    assert all(f";msgid={message_id};".encode() in with_c for message_id in more_ids)


@needs_compiled
def test_the_compiled_translation_takes_the_common_frames_and_leaves_the_rest_to_python():
    translate._source(b"bob")  # (known: the first frame from a sender is Python's)
    data = frames_from([(0, "bob", "hi"), (2, "", "note"), (1, "bob", "yo"), (0, "bob", "two\nlines"), (0, "bob", "x")])
    lines_made, offset = compiled.direct_lines(data, 0, b" PRIVMSG alice :", translate._sources, MAX_LINE)
    assert lines_made == (
        b":bob!bob@chatroom PRIVMSG alice :hi\r\n:chatroom NOTICE x :note\r\n:bob!bob@chatroom PRIVMSG alice :yo\r\n"
    )
    assert data[offset:] == frames_from([(0, "bob", "two\nlines"), (0, "bob", "x")])
    assert compiled.direct_lines(data, len(data), b"m", translate._sources, MAX_LINE) == (b"", len(data))


@needs_compiled
def test_a_batch_of_lines_larger_than_the_compiled_loops_first_buffer_is_written_whole():
    chunks = [frames_from([(1, "bob", "w" * 400, n) for n in range(1, 60)])]
    reader = Reader("alice", {"server-time", "message-tags"})
    with_c = to_irc(chunks, reader)
    translate.compiled = None
    try:
        assert with_c == to_irc(chunks, reader) and len(with_c) > 3 * 8192
    finally:
        translate.compiled = compiled


@needs_compiled
@given(st.lists(st.tuples(st.integers(0, 3), SENDERS, TEXTS), max_size=12), CAPS, st.sampled_from(["bob", "alice"]))
def test_room_messages_queued_as_chunks_read_the_same_with_their_lines_made_in_c(kinds, caps, nick):
    """Each frame its own chunk, as a room's message is queued for each member; a member
    before has made the room messages' lines (and, taking the same tags, their tagged ones)."""
    if "server-time" in caps:
        kinds = [(kind or 1, *rest) for kind, *rest in kinds]
    chunks = [frames_from([kind]) for kind in kinds]
    to_irc(chunks, Reader("first", caps))
    with_c = to_irc(chunks, Reader(nick, caps))
    translate.compiled = None
    try:
        assert with_c == to_irc(chunks, Reader(nick, caps))
    finally:
        translate.compiled = compiled


ROOMS = st.sampled_from(["#r", "#caf\u00e9", "#team_2", "#a\\b"])  # (a backslash, escaped in a msgid)


@needs_compiled
@given(st.lists(st.tuples(ROOMS, SENDERS, TEXTS), min_size=1, max_size=8), CAPS, st.sampled_from(["bob", "alice"]))
def test_room_lines_made_in_c_for_the_first_member_are_the_ones_python_makes(messages, caps, nick):
    """Each translation from nothing made yet (but the senders' and rooms' words, which Python
    learns at their first message): the lines C makes and keeps, tagged or not, are the ones
    Python would."""
    chunks = [
        encode(RoomMessage(room, sender, n + 1, 1_700_000_000_000 + n, text))
        for n, (room, sender, text) in enumerate(messages)
    ]
    for room, sender, _text in messages:
        translate._source(sender.encode())
        translate._channel(room.encode())

    def translated(with_c: bool) -> bytes:
        translate._room_lines.clear()
        translate._tagged_room_lines.clear()
        translate.compiled = compiled if with_c else None
        try:
            return to_irc(chunks, Reader(nick, caps, accounts={"carol", "b\u00e9b"}))
        finally:
            translate.compiled = compiled

    assert translated(with_c=True) == translated(with_c=False)


@needs_compiled
def test_many_room_messages_for_one_member_are_all_written_in_order():
    chunks = [frames_from([(3, "bob", f"line {n}")]) for n in range(600)]
    to_irc(chunks, Reader("first"))
    with_c = to_irc(chunks, Reader("alice"))
    translate.compiled = None
    try:
        assert with_c == to_irc(chunks, Reader("alice"))
    finally:
        translate.compiled = compiled
    assert with_c.count(b"PRIVMSG #r :line ") == 600 and with_c.endswith(b":line 599\r\n")


@needs_compiled
@given(
    st.lists(st.tuples(st.integers(0, 3), SENDERS, TEXTS), max_size=12),
    st.sets(st.sampled_from(["server-time", "message-tags", "account-tag", "echo-message", "draft/read-marker"])),
    st.sampled_from(["bob", "alice"]),
    st.booleans(),
)
def test_lines_for_writes_what_to_irc_writes_or_leaves_the_chunks_to_it(kinds, caps, nick, together):
    """The hub's send of an IRC client's frames (lines_for, through send_queued): to_irc's
    lines whole, or None (then to_irc runs), never some of them."""
    if "server-time" in caps:
        kinds = [(kind or 1, *rest) for kind, *rest in kinds]
    chunks = [frames_from(kinds)] if together else [frames_from([kind]) for kind in kinds]
    made = compiled.lines_for(chunks, Reader(nick, caps, accounts={"bob"}))
    translate.compiled = None
    try:
        in_python = to_irc(chunks, Reader(nick, caps, accounts={"bob"}))
    finally:
        translate.compiled = compiled
    assert made is None or made == in_python
    if "draft/read-marker" in caps:
        assert made is None  # (each room message's time is noted: Python's)


@needs_compiled
@pytest.mark.skipif(outboxes.compiled is None, reason="the outbox's send built without a C compiler")
def test_an_irc_clients_outbox_is_sent_its_lines_by_the_compiled_send(monkeypatch):
    """Room and direct messages, queued as a room's members and a recipient are handed them:
    the hub's compiled send writes their lines without the outbox's _take_frames, counted as
    queued until the socket took them; a reader noting read markers gets them through it."""
    chunks = [frames_from([(3, "bob", "hi all")]), frames_from([(1, "carol", "psst", 9)])]
    chunks.append(frames_from([(3, "alice", "mine")]))  # (her own: nothing without echo-message)
    for name in (b"bob", b"carol", b"alice"):
        translate._source(name)  # (known: the first frame from a sender is Python's)
    translate._channel(b"#r")
    taken_in_python = []
    take_frames = IrcOutbox._take_frames

    def counted(outbox):
        taken_in_python.append(outbox._reader.caps)
        return take_frames(outbox)

    monkeypatch.setattr(IrcOutbox, "_take_frames", counted)
    for caps in (set(), {"server-time", "message-tags"}, {"draft/read-marker"}):
        ours, theirs = kernel_socket_pair()
        outbox = IrcOutbox(TcpStream(ours), 1 << 20, WAIT, lambda: None, Reader("alice", caps))
        theirs.settimeout(WAIT)
        try:
            for chunk in chunks:
                outbox.queue_for_hub(chunk)
            assert outbox.queued_bytes == sum(map(len, chunks))
            send_queued(outbox)
            expected = to_irc(chunks, Reader("alice", caps))
            assert b"PRIVMSG #r :hi all" in expected and b"psst" in expected and b"mine" not in expected
            assert theirs.recv(1 << 16) == expected
            assert outbox.queued_bytes == 0 and outbox._frames is None
        finally:
            outbox.close()
            ours.close()
            theirs.close()
    assert taken_in_python == [{"draft/read-marker"}]


def test_readers_taking_the_same_tags_share_one_set_of_them():
    """(The lines tagged for them are kept under it: found by identity, not compared.)"""
    first = writing_for("alice", {"server-time", "message-tags", "echo-message"}).taken
    second = writing_for("bob", {"message-tags", "server-time", "sasl"}).taken
    assert first == {"server-time", "message-tags"} and first is second
    assert writing_for("carol", {"echo-message"}).taken is None
