"""Ids of direct messages: taken when a message is relayed, carried to clients of extension
version 3 and kept as its id in the history, so that a client can tell a message it was
relayed from the same one in the history (and, later, mark what it has read).

An id is ``time (ms) << 20 | sequence << 12 | node``: increasing on one server (a burst of
more than 256 in a millisecond borrows the next millisecond), and apart on each node of a
cluster (its 12-bit tag); between nodes, ids follow their clocks. They fit a signed 64-bit
integer (SQLite's) until the year 2248.
"""

import random
import time

try:
    from . import _message_ids as compiled  # (built from _message_ids.c where the install found a compiler)
except ImportError:
    compiled = None  # type: ignore[assignment]

SEQUENCE_BITS = 8
NODE_BITS = 12
_last = 0
_node = 0


def use_node_tag(tag: int | None = None) -> None:
    """This process is one node of a cluster: its ids get a tag of their own (random, unless
    given)."""
    global _node
    _node = random.getrandbits(NODE_BITS) if tag is None else tag % (1 << NODE_BITS)
    if compiled is not None:
        compiled.use_node_tag(_node)


def next_id_in_python() -> tuple[int, int]:
    """(a new id, the time in ms it stands for): next_id, where it is not compiled."""
    global _last
    now_ms = time.time_ns() // 1_000_000
    candidate = (now_ms << (SEQUENCE_BITS + NODE_BITS)) | _node
    if candidate <= _last:
        candidate = _last + (1 << NODE_BITS)
    _last = candidate
    return candidate, candidate >> (SEQUENCE_BITS + NODE_BITS)


next_id = next_id_in_python if compiled is None else compiled.next_id


def time_of_id(message_id: int) -> int:
    """The time (ms) an id stands for."""
    return message_id >> (SEQUENCE_BITS + NODE_BITS)


def first_id_at(time_ms: int) -> int:
    """The least id a message of time_ms (or later) has: ids below it are of earlier ones."""
    return time_ms << (SEQUENCE_BITS + NODE_BITS)
