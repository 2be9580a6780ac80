"""Random and broken input, for fuzz tests: protocol frames and WebSocket frames."""

import random

from ..codec import encode, frame
from ..protocol import ListUsers, Login, Logout, SendTo
from ..websocket_client import binary_frame


def random_frames(rng: random.Random, count: int) -> bytes:
    """count frames for fuzzing: valid ones, mutated ones and noise, concatenated."""
    valid = [
        encode(Login("name")),
        encode(ListUsers()),
        encode(SendTo("name", "text")),
        encode(Logout()),
        encode(SendTo("name", "é" * 50)),
    ]
    out = bytearray()
    for _ in range(count):
        choice = rng.random()
        if choice < 0.3:
            mutated = bytearray(rng.choice(valid))
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            out += mutated
        elif choice < 0.5:
            body = rng.randbytes(rng.randint(0, 40))
            out += frame(rng.randrange(256), body)
        elif choice < 0.6:
            out += rng.randbytes(rng.randint(1, 30))
        else:
            out += rng.choice(valid)
    return bytes(out)


def random_websocket_frames(rng: random.Random, count: int) -> bytes:
    """count WebSocket frames, as a client would send them after the handshake, for fuzzing:
    well-formed binary messages carrying random_frames, and frames that break the rules
    (text, fragments, control frames of any size, reserved bits, unmasked, false lengths),
    mutated headers and noise, concatenated."""
    out = bytearray()
    for _ in range(count):
        choice = rng.random()
        payload = random_frames(rng, 1) if rng.random() < 0.7 else rng.randbytes(rng.randint(0, 300))
        if choice < 0.4:
            out += binary_frame(payload, rng.randbytes(4))
        elif choice < 0.7:
            first = rng.choice([0x80, 0x00]) | rng.choice([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xF])
            first |= rng.choice([0, 0, 0, 0x40, 0x20, 0x10])  # now and then a reserved bit
            masked = rng.random() < 0.9
            size = len(payload)
            if size < 126 and rng.random() < 0.8:
                head = bytes((first, (0x80 if masked else 0) | size))
            else:
                claimed = rng.choice([size, size + 1, rng.randrange(1 << 16), rng.randrange(1 << 40)])
                head = bytes((first, (0x80 if masked else 0) | 127)) + claimed.to_bytes(8, "big")
            out += head + (rng.randbytes(4) if masked else b"") + payload
        elif choice < 0.9:
            frame = bytearray(binary_frame(payload, rng.randbytes(4)))
            for _ in range(rng.randint(1, 3)):
                frame[rng.randrange(min(len(frame), 8))] = rng.randrange(256)
            out += frame
        else:
            out += rng.randbytes(rng.randint(1, 40))
    return bytes(out)
