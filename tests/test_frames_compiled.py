"""The server's compiled reading of SENDTO frames (chatroom/_frames.c) gives the events the
Python decoder gives, for any bytes in any pieces: it takes the common case only and leaves
every other frame to the decoder. The INCOMING and DIRECT-MESSAGE frames it makes, and the
ids taken in C (server/_message_ids.c), are the Python's."""

import random
import shutil
import sysconfig
import time
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chatroom import codec
from chatroom.codec import Decoder, encode, frame
from chatroom.protocol import MAX_BODY, SENDTO, DirectMessage, Incoming, ListUsers, Login, SendTo
from chatroom.room_frames import RoomMessage
from chatroom.server import message_ids
from chatroom.server.connection import outbox, relay
from chatroom.server.irc import speedups
from chatroom.server.storage import sqlite_worker
from chatroom.testing import random_frames

needs_compiled = pytest.mark.skipif(codec.compiled is None, reason="built without a C compiler")

PIECES = st.sampled_from(
    [
        encode(SendTo("bob", "hi")),
        encode(SendTo("b\u00e9b", "caf\u00e9 " * 30)),
        encode(Login("alice")),
        encode(ListUsers()),
        frame(SENDTO, b""),  # no name field
        frame(SENDTO, b"\x05bo"),  # a name field past the body
        frame(SENDTO, b"\x03bob\xff"),  # not UTF-8
        frame(SENDTO, b"\x02\xc3(hi"),  # a name not UTF-8
        frame(SENDTO, b"\x00"),  # an empty name, no text (the rules refuse it; the codec reads it)
        bytes((SENDTO,)) + (MAX_BODY + 1).to_bytes(4, "big"),  # too large
        b"\x03\x00",  # a header begun
    ]
)


def events_of(pieces: list[bytes], compiled: bool) -> list:
    decoder = Decoder.for_server()
    decoder._reads_sendto = compiled
    events = []
    for piece in pieces:
        events += decoder.receive_data(piece)
    return [(type(event).__name__, repr(event), getattr(event, "raw", None)) for event in events]


@needs_compiled
@given(st.lists(PIECES, max_size=30), st.lists(st.integers(1, 60), max_size=10))
@example([encode(SendTo("bob", "hi"))] * 3, [])
def test_the_compiled_reading_gives_the_events_the_decoder_gives_in_any_pieces(frames, cuts):
    data = b"".join(frames)
    pieces, at = [], 0
    for cut in cuts:  # (the same bytes arriving in pieces: an unfinished frame is held in a bytearray)
        pieces.append(data[at : at + cut])
        at += cut
    pieces.append(data[at:])
    assert events_of(pieces, compiled=True) == events_of(pieces, compiled=False)


@needs_compiled
def test_the_compiled_reading_survives_the_fuzzers_frames():
    rng = random.Random(7)
    for _ in range(200):
        data = random_frames(rng, 30)
        assert events_of([data], compiled=True) == events_of([data], compiled=False)


@needs_compiled
def test_a_sendto_read_in_c_is_the_sendto_the_rules_are_given():
    [event] = Decoder.for_server().receive_data(encode(SendTo("b\u00e9b", "hi")))
    assert type(event) is SendTo and event == SendTo("b\u00e9b", "hi") and event.raw == b"hi"
    assert type(event.raw) is bytes and not Decoder.for_client()._reads_sendto


@needs_compiled
@given(st.text(min_size=1, max_size=60), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.text(max_size=300))
def test_a_direct_message_frame_made_in_c_is_the_pythons(sender, message_id, time_ms, text):
    made = codec.direct_message_frame(sender, message_id, time_ms, text.encode())
    assert made == codec.direct_message_frame_in_python(sender, message_id, time_ms, text.encode())
    assert Decoder.for_client().receive_data(made) == [DirectMessage(sender, message_id, time_ms, text)]


@needs_compiled
@given(st.text(min_size=1, max_size=60), st.text(max_size=300))
def test_an_incoming_frame_made_in_c_is_the_pythons(sender, text):
    made = codec.incoming_frame(sender, text.encode())
    assert made == codec.incoming_frame_in_python(sender, text.encode())
    assert Decoder.for_client().receive_data(made) == [Incoming(sender, text)]


@needs_compiled
@given(
    st.text(min_size=1, max_size=60),
    st.text(min_size=1, max_size=60),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.text(max_size=300),
)
def test_a_room_message_frame_made_in_c_is_the_pythons(room, sender, message_id, time_ms, text):
    made = codec.room_message_frame(room, sender, message_id, time_ms, text.encode())
    assert made == codec.room_message_frame_in_python(room, sender, message_id, time_ms, text.encode())
    assert Decoder.for_client().receive_data(made) == [RoomMessage(room, sender, message_id, time_ms, text)]


@needs_compiled
def test_the_message_frames_refuse_what_their_fields_cannot_hold():
    with pytest.raises(OverflowError):
        codec.direct_message_frame("bob", 2**64, 0, b"hi")
    with pytest.raises(OverflowError):
        codec.direct_message_frame("bob", -1, 0, b"hi")
    with pytest.raises(TypeError):
        codec.direct_message_frame(b"bob", 1, 0, b"hi")  # (a sender is a str)
    for make in (codec.incoming_frame, codec.incoming_frame_in_python):
        with pytest.raises(ValueError):
            make("\u00e9" * 128, b"hi")  # (256 bytes of UTF-8: more than a name field holds)
        assert make("\u00e9" * 127 + "x", b"hi")[5:7] == b"\xff\xc3"
    for make_room in (codec.room_message_frame, codec.room_message_frame_in_python):
        for room, sender in (("#" + "\u00e9" * 128, "bob"), ("#r", "\u00e9" * 128)):
            with pytest.raises(ValueError):
                make_room(room, sender, 1, 0, b"hi")
    with pytest.raises(OverflowError):
        codec.room_message_frame("#r", "bob", 2**64, 0, b"hi")
    with pytest.raises(TypeError):
        codec.room_message_frame("#r", b"bob", 1, 0, b"hi")  # (names are str)


@pytest.mark.skipif(message_ids.compiled is None, reason="built without a C compiler")
@pytest.mark.parametrize("take", [message_ids.next_id, message_ids.next_id_in_python], ids=["c", "python"])
def test_ids_taken_increase_carry_the_nodes_tag_and_their_time(take):
    before = time.time_ns() // 1_000_000
    message_ids.use_node_tag(0x5A7)
    try:
        taken = [take() for _ in range(3000)]  # (more than 256 in a millisecond borrow the next)
    finally:
        message_ids.use_node_tag(0)
    after = time.time_ns() // 1_000_000
    ids = [message_id for message_id, _ in taken]
    assert ids == sorted(set(ids))
    assert all(message_id & 0xFFF == 0x5A7 for message_id in ids)
    assert all(time_ms == message_ids.time_of_id(message_id) for message_id, time_ms in taken)
    assert before <= taken[0][1] and taken[-1][1] <= after + len(taken) // 256 + 1


def test_the_compiled_loops_are_built_where_a_compiler_and_pythons_headers_are():
    """Where the install could build them, it did (else the tests of both are skipped)."""
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not (headers and shutil.which(compiler)):
        pytest.skip("no compiler or no Python.h here: the Python loops run alone")
    assert None not in (codec.compiled, outbox.compiled, relay.compiled, speedups.compiled, message_ids.compiled)
    if Path("/usr/include/sqlite3.h").exists():  # (scripts/test installs it where it can)
        assert sqlite_worker.compiled is not None
