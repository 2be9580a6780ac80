"""docs/protocol.md against the codec: every frame the codec reads is in its tables, every frame
its tables name has a byte example, and every example written out whole is a frame of that
name that the codec reads, and writes back."""

import re
from pathlib import Path

from chatroom.codec import Decoder, encode
from chatroom.protocol import Malformed

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
_ROW = re.compile(r"^\| (?:client|server) → (?:client|server) \| `0x([0-9a-f]{2})` \| ([A-Z][A-Z-]*) \|")
_START = re.compile(r"^    ([A-Z][A-Z-]*)\b")
_BYTES = r"(?:[0-9a-f]{2}|<[^>]+>)(?: (?:[0-9a-f]{2}|<[^>]+>))*"
_HEX_AT_END = re.compile(rf"\s{{2,}}({_BYTES})\s*$")
_CONTINUED = re.compile(rf"^ {{8,}}({_BYTES})\s*$")


def frame_types() -> dict[str, set[int]]:
    """Each frame's name in the tables -> its type bytes (LIST, SENDTO and HISTORY go both ways)."""
    types: dict[str, set[int]] = {}
    for line in DOC.read_text().splitlines():
        if match := _ROW.match(line):
            types.setdefault(match.group(2), set()).add(int(match.group(1), 16))
    return types


def examples() -> list[tuple[str, str]]:
    """(name, bytes as written) of each example in the code blocks."""
    found: list[tuple[str, str]] = []
    for line in DOC.read_text().splitlines():
        if (more := _CONTINUED.match(line)) and found:
            name, written = found[-1]
            found[-1] = (name, f"{written} {more.group(1)}".strip())
        elif start := _START.match(line):
            hex_part = _HEX_AT_END.search(line)
            found.append((start.group(1), hex_part.group(1) if hex_part else ""))
    return found


def test_every_frame_the_codec_reads_is_in_the_tables():
    from chatroom.bodies import CLIENT_MESSAGES, SERVER_MESSAGES

    documented = set().union(*frame_types().values())
    assert sorted(hex(t) for t in set(CLIENT_MESSAGES) | set(SERVER_MESSAGES) if t not in documented) == []


def test_every_frame_in_the_tables_has_a_byte_example():
    named = {name for name, written in examples() if written}
    assert sorted(set(frame_types()) - named) == []


def test_every_example_written_out_whole_is_read_back_as_that_frame():
    types = frame_types()
    checked = 0
    for name, written in examples():
        if not written or "<" in written or name not in types:
            continue  # (a placeholder such as <t: 8 bytes>; RESPONSE's statuses by their names)
        data = bytes.fromhex(written)
        assert data[0] in types[name], f"{name}: type {data[0]:#04x}"
        reader = Decoder.for_client if data[0] & 0x80 else Decoder.for_server
        [message] = reader().receive_data(data)
        assert type(message) is not Malformed, f"{name}: {written}"
        # (Written again, it reads the same; byte for byte but where the doc says a value is
        # read as another, as a u64 past 2^63 - 1 is.)
        assert reader().receive_data(encode(message)) == [message], f"{name}: {written} is {message}"
        checked += 1
    assert checked >= 30
