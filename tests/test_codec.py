"""The sans-I/O codec: bytes in any split, messages out; no sockets."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatroom.codec import (
    Decoder,
    direct_message_frame,
    encode,
    incoming_frame,
    name_field,
    room_message_frame,
    without_id,
)
from chatroom.protocol import (
    MAX_BODY,
    Authenticate,
    ChangePassword,
    DirectMessage,
    FrameTooLarge,
    Hello,
    HistoryEntry,
    HistoryPage,
    HistoryRequest,
    Incoming,
    ListUsers,
    Login,
    Logout,
    Malformed,
    Register,
    Response,
    SendTo,
    ServerVersion,
    Status,
    StoredMessage,
    UserList,
    _allowed_in_name,
    is_valid_username,
)
from chatroom.room_frames import RoomMessage


def header(frame_type, length):
    return struct.pack("!BI", frame_type, length)


def decode_requests(data):
    return Decoder.for_server().receive_data(data)


def decode_replies(data):
    return Decoder.for_client().receive_data(data)


# --- Exact bytes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, wire",
    [
        (Login("alice"), b"\x01\x00\x00\x00\x05alice"),
        (ListUsers(), b"\x02\x00\x00\x00\x00"),
        (SendTo("bob", "hi"), b"\x03\x00\x00\x00\x06\x03bobhi"),
        (Logout(), b"\x04\x00\x00\x00\x00"),
        (UserList(("a", "bc")), b"\x81\x00\x00\x00\x05\x01a\x02bc"),
        (UserList(()), b"\x81\x00\x00\x00\x00"),
        (Response(Status.OK), b"\x82\x00\x00\x00\x01\x00"),
        (Response(Status.FAILURE), b"\x82\x00\x00\x00\x01\x01"),
        (Response(Status.MALFORMED), b"\x82\x00\x00\x00\x01\x02"),
        (Incoming("bob", "hé"), b"\x83\x00\x00\x00\x07\x03bobh\xc3\xa9"),
    ],
)
def test_every_message_has_its_exact_bytes_and_round_trips(message, wire):
    assert encode(message) == wire
    decoder = Decoder.for_client() if wire[0] & 0x80 else Decoder.for_server()
    assert decoder.receive_data(wire) == [message]


def test_name_field_rejects_names_over_255_bytes():
    with pytest.raises(ValueError):
        name_field("é" * 128)


def test_encode_rejects_non_messages():
    with pytest.raises(TypeError):
        encode("login alice")


# --- Malformed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"\x00\x00\x00\x00\x00",  # unknown type
        b"\x05\x00\x00\x00\x02hi",  # unknown type with a body
        b"\x81\x00\x00\x00\x00",  # a server type sent by a client
        b"\xff\x00\x00\x00\x00",
        b"\x02\x00\x00\x00\x01x",  # LIST with a body
        b"\x04\x00\x00\x00\x01x",  # LOGOUT with a body
        b"\x03\x00\x00\x00\x00",  # SENDTO, empty body
        b"\x03\x00\x00\x00\x03\x05ab",  # SENDTO, name length past the body
        b"\x01\x00\x00\x00\x02\xc3\x28",  # LOGIN, invalid UTF-8
        b"\x03\x00\x00\x00\x04\x01\xffhi",  # SENDTO, invalid UTF-8 in the name
        b"\x03\x00\x00\x00\x04\x01a\xed\xa0",  # SENDTO, invalid UTF-8 in the text
        b"\x03\x00\x00\x00\x05\x01a\xed\xa0\x80",  # SENDTO, a UTF-8-encoded surrogate
    ],
)
def test_malformed_requests(wire):
    assert decode_requests(wire) == [Malformed(wire[0])]


@pytest.mark.parametrize(
    "wire",
    [
        b"\x01\x00\x00\x00\x00",  # a client type sent by a server
        b"\x82\x00\x00\x00\x00",  # RESPONSE without a status
        b"\x82\x00\x00\x00\x02\x00\x00",
        b"\x82\x00\x00\x00\x01\x05",  # unknown status
        b"\x81\x00\x00\x00\x02\x05a",  # LIST name field past the body
        b"\x83\x00\x00\x00\x00",  # SENDTO without a sender
        b"\x83\x00\x00\x00\x03\x01a\xff",
    ],
)
def test_malformed_server_frames(wire):
    assert decode_replies(wire) == [Malformed(wire[0])]


def test_structurally_valid_frames_are_not_malformed():
    # Validity of names and texts is the server's to judge (FAILURE), not the codec's.
    assert decode_requests(b"\x03\x00\x00\x00\x01\x00") == [SendTo("", "")]
    assert decode_requests(b"\x01\x00\x00\x00\x00") == [Login("")]
    assert decode_requests(b"\x01\x00\x00\x00\x03a b") == [Login("a b")]


def test_malformed_frame_leaves_the_stream_in_step():
    wire = b"\x09\x00\x00\x00\x02zz" + encode(ListUsers())
    assert decode_requests(wire) == [Malformed(9), ListUsers()]


# --- Oversize lengths -------------------------------------------------------------------


def test_oversize_length_is_reported_as_soon_as_the_header_is_complete():
    decoder = Decoder.for_server()
    assert decoder.receive_data(header(0x03, MAX_BODY + 1)[:4]) == []
    assert decoder.receive_data(header(0x03, MAX_BODY + 1)[4:]) == [FrameTooLarge(0x03, MAX_BODY + 1)]
    assert decoder.broken
    assert decoder.pending == 0
    assert decoder.receive_data(encode(ListUsers())) == []


def test_largest_legal_length_waits_for_its_body():
    decoder = Decoder.for_server()
    assert decoder.receive_data(header(0x03, MAX_BODY)) == []
    assert not decoder.broken
    body = name_field("b") + b"x" * (MAX_BODY - 2)
    assert decoder.receive_data(body) == [SendTo("b", "x" * (MAX_BODY - 2))]


def test_frames_before_an_oversize_header_are_still_decoded():
    wire = encode(ListUsers()) + header(0x01, 0xFFFFFFFF) + b"junk"
    assert decode_requests(wire) == [ListUsers(), FrameTooLarge(0x01, 0xFFFFFFFF)]


# --- Splits -----------------------------------------------------------------------------

STREAM = [Login("alice"), ListUsers(), SendTo("bob", "hello there"), Logout(), SendTo("é", "ünï ✓")]


def test_one_byte_at_a_time():
    wire = b"".join(encode(m) for m in STREAM)
    decoder = Decoder.for_server()
    events = []
    for i in range(len(wire)):
        events += decoder.receive_data(wire[i : i + 1])
    assert events == STREAM
    assert decoder.pending == 0


def test_many_frames_in_one_chunk():
    messages = STREAM * 200
    assert decode_requests(b"".join(encode(m) for m in messages)) == messages


# --- Properties -------------------------------------------------------------------------

names = st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255)
texts = st.text(max_size=300)
requests = st.one_of(
    st.builds(Login, names),
    st.builds(ListUsers),
    st.builds(SendTo, names, texts),
    st.builds(Logout),
)
server_messages = st.one_of(
    st.builds(UserList, st.lists(names, max_size=10).map(tuple)),
    st.builds(Response, st.sampled_from(Status)),
    st.builds(Incoming, names, texts),
)


def split_feed(decoder, wire, cuts):
    events = []
    start = 0
    for cut in sorted(cuts) + [len(wire)]:
        events += decoder.receive_data(wire[start:cut])
        start = max(start, cut)
    return events


@given(requests)
def test_request_round_trip(message):
    assert decode_requests(encode(message)) == [message]


@given(server_messages)
def test_server_message_round_trip(message):
    assert decode_replies(encode(message)) == [message]


@given(st.lists(requests, max_size=20), st.data())
def test_any_split_of_a_request_stream_decodes_the_same(messages, data):
    wire = b"".join(encode(m) for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    assert split_feed(Decoder.for_server(), wire, cuts) == messages


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=8))
def test_arbitrary_bytes_never_raise_and_decode_alike_in_any_split(wire, cuts):
    whole = Decoder.for_server().receive_data(wire)
    assert split_feed(Decoder.for_server(), wire, [c for c in cuts if c <= len(wire)]) == whole
    for event in whole:
        assert isinstance(event, (Login, ListUsers, SendTo, Logout, Malformed, FrameTooLarge))


# --- Usernames --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "Bob", "x" * 20, "😀" * 20, "jean-luc", "名前"])
def test_valid_usernames(name):
    assert is_valid_username(name)


@pytest.mark.parametrize(
    "name",
    ["", "x" * 21, "a b", "a\tb", "a\nb", "a\x00", "a\x7f", "a\x85", "a\u0080", "a\u009f", "a\u00a0", "a\u3000"],
)
def test_invalid_usernames(name):
    assert not is_valid_username(name)


def test_every_ascii_character_in_a_name_is_judged_by_the_general_rule():
    # (ASCII names take a shorter way: it must agree with the rule for every code point.)
    for code in range(128):
        c = chr(code)
        allowed = _allowed_in_name(c)
        assert is_valid_username("a" + c + "b") == allowed, repr(c)
        assert is_valid_username(c) == (allowed and c != "#"), repr(c)


# --- The extension -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, wire",
    [
        (Hello(1), b"\x05\x00\x00\x00\x01\x01"),
        (Register("al", "pw"), b"\x06\x00\x00\x00\x05\x02alpw"),
        (Authenticate("al", "pw"), b"\x07\x00\x00\x00\x05\x02alpw"),
        (ChangePassword("old", "new"), b"\x08\x00\x00\x00\x07\x03oldnew"),
        (HistoryRequest("bob", 20, 0), b"\x09\x00\x00\x00\x0e\x03bob\x00\x14" + bytes(8)),
    ],
)
def test_extension_requests_round_trip_in_exact_bytes(message, wire):
    assert encode(message) == wire
    assert decode_requests(wire) == [message]


def test_extension_replies_round_trip_in_exact_bytes():
    stored = StoredMessage("bob", 1_700_000_000_123, "hi")
    wire = encode(stored)
    assert wire == b"\x85\x00\x00\x00\x0e\x03bob" + (1_700_000_000_123).to_bytes(8, "big") + b"hi"
    page = HistoryPage("bob", (HistoryEntry(7, 1000, True, "hé"), HistoryEntry(9, 2000, False, "yo")))
    wire = encode(page)
    assert wire[:9] == b"\x84\x00\x00\x00\x33\x03bob"  # 4 + (21 + 3) + (21 + 2)
    assert wire[9:30] == (7).to_bytes(8, "big") + (1000).to_bytes(8, "big") + b"\x00\x00\x00\x00\x03"
    assert decode_replies(encode(stored) + wire) == [stored, page]
    assert decode_replies(b"\x82\x00\x00\x00\x01\x03\x82\x00\x00\x00\x01\x04") == [
        Response(Status.REGISTERED),
        Response(Status.STORED),
    ]
    assert encode(ServerVersion(1)) == b"\x86\x00\x00\x00\x01\x01"
    assert decode_replies(b"\x86\x00\x00\x00\x01\x01") == [ServerVersion(1)]


@pytest.mark.parametrize(
    "wire",
    [
        b"\x05\x00\x00\x00\x00",  # HELLO without a version
        b"\x05\x00\x00\x00\x01\x00",  # version 0
        b"\x09\x00\x00\x00\x04\x03bob",  # HISTORY without count and before
        b"\x06\x00\x00\x00\x03\x05ab",  # name field past the body
    ],
)
def test_malformed_extension_requests(wire):
    assert decode_requests(wire) == [Malformed(wire[0])]


def test_a_history_entry_past_the_body_is_malformed():
    wire = encode(HistoryPage("b", (HistoryEntry(1, 1, True, "abc"),)))
    cut = wire[:-1]
    assert decode_replies(cut[:1] + (len(cut) - 5).to_bytes(4, "big") + cut[5:]) == [Malformed(0x84)]


_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
_u64 = st.integers(0, 2**64 - 1)


@given(_names, _names, _u64, _u64, st.text(st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_the_relays_frames_are_the_messages_frames(name, sender, message_id, time_ms, text):
    """The frames the relay builds from the text's bytes, without a message made, are those
    encode makes of the message."""
    raw = text.encode()
    assert incoming_frame(sender, raw) == encode(Incoming(sender, text))
    assert direct_message_frame(sender, message_id, time_ms, raw) == encode(
        DirectMessage(sender, message_id, time_ms, text)
    )
    room = "#" + name
    assert room_message_frame(room, sender, message_id, time_ms, raw) == encode(
        RoomMessage(room, sender, message_id, time_ms, text)
    )
    # A client of an older version takes the INCOMING cut from the DIRECT-MESSAGE's bytes.
    assert without_id(direct_message_frame(sender, message_id, time_ms, raw)) == encode(Incoming(sender, text))
    assert without_id(encode(Incoming(sender, text))) == encode(Incoming(sender, text))


def test_a_servers_frames_carry_the_longest_message_from_the_longest_name_within_their_bound():
    from chatroom.device_frames import OwnMessage
    from chatroom.protocol import MAX_SERVER_BODY
    from chatroom.room_frames import RoomHistory, RoomHistoryEntry
    from chatroom.search_frames import Found, SearchResults

    text, name = chr(0x20000) * 65535, chr(0x20000) * 20  # (four bytes each: the longest there are)
    room, most = "#" + name, 1 << 63
    longest = [
        DirectMessage(name, most, most, text),
        StoredMessage(name, most, text),
        RoomMessage(room, name, most, most, text),
        OwnMessage(room, most, most, text),
        HistoryPage(room, (HistoryEntry(most, most, True, text),)),
        RoomHistory(room, (RoomHistoryEntry(most, most, name, text),)),
        SearchResults((Found(most, most, room, name, text),)),
    ]
    sizes = [len(encode(message)) - 5 for message in longest]
    assert max(sizes) == MAX_SERVER_BODY and min(sizes) > MAX_BODY  # (each more than a client may send)
    assert Decoder.for_client().receive_data(b"".join(map(encode, longest))) == longest
    assert Decoder.for_client().receive_data(struct.pack("!BI", 0x84, MAX_SERVER_BODY + 1)) == [
        FrameTooLarge(0x84, MAX_SERVER_BODY + 1)
    ]
    assert Decoder.for_server().receive_data(struct.pack("!BI", 0x01, MAX_BODY + 1)) == [
        FrameTooLarge(0x01, MAX_BODY + 1)
    ]
