"""The relay's common case, compiled: a run of SENDTOs answered without a Python frame each.

A SENDTO from a logged-in client of the seed protocol (or of versions 1 and 2) to a user
logged in on this server, neither of them registered, was five Python calls: Rules.answer,
its _send_to, the recipient's Session.deliver, Outbox.queue_for_hub, and the sender's
queue_to_flush for the OK. _fanout.c's answer_sendtos does what they do for as many SENDTOs
in a row as take that way, and stops at the first that does not (a failure, a room, a
registered user, one on another node, a full queue, a client of version 3 or 4): the Python
answers that one as it always did. Without a compiler there is no such function, and every
frame is answered by the Python.
"""

from collections.abc import Callable

from ...codec import incoming_frame
from ...protocol import MAX_TEXT_CHARS, SendTo
from ..replies import OK
from ..rules import Rules
from .outbox import compiled

# What the C reads, by slot, in its order (see known_relay in _fanout.c).
_RULES_SLOTS = ("name", "held", "_registered", "_devices", "_directory", "_accounts")
_SENDTO_SLOTS = ("recipient", "text", "raw")
_SESSION_SLOTS = ("rules", "_outbox", "wants_ids")


def compiled_relay(session_type: type) -> Callable[[list, int, int, Rules, object], int] | None:
    """answer_sendtos(events, start, stop, rules, outbox) -> the index of the first event it
    left to the Python, for sessions of session_type (whose deliver must be Session's);
    None where _fanout.c was not built."""
    if compiled is None:
        return None
    compiled.known_relay(
        Rules,
        _slots(Rules, _RULES_SLOTS),
        SendTo,
        _slots(SendTo, _SENDTO_SLOTS),
        session_type,
        _slots(session_type, _SESSION_SLOTS),
        incoming_frame,
        OK,
        MAX_TEXT_CHARS,
    )
    return compiled.answer_sendtos


def _slots(kind: type, names: tuple[str, ...]) -> tuple:
    return tuple(vars(kind)[name] for name in names)
