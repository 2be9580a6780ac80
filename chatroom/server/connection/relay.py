"""The relay's common case, compiled: a message to one user delivered without a Python frame.

A SENDTO to a user logged in on this server was five Python calls: Rules.answer, its
_send_to, the recipient's deliver (a session's, or a user's devices' and then each session's),
Outbox.queue_for_hub, and the sender's queue_to_flush for the OK; for a registered user, the
accounts' record too. _relay.c's answer_sendtos does what they do (calling that record) for as
many SENDTOs in a row as take that way, and stops at the first that does not (a failure, one
on another node, a full queue, a sender away, or on several devices sending what the history
keeps): the Python answers that one as it always did. A record may wait for the disk while
other greenlets run, so the sender's state is read again after one. A SENDTO to a room
of this server from a member is posted there as Rules._send_to, RoomRules._room_message and
Rooms.post would (about a dozen Python calls), once the room's members' sinks are found. relay_text
does the same for one text, for the IRC port's PRIVMSG, and answer_privmsgs for a run of
PRIVMSGs. Without a compiler there are no such functions, and every message is answered by
the Python.
"""

from collections.abc import Callable

from ... import codec
from ...codec import incoming_frame
from ...protocol import MAX_TEXT_CHARS, SendTo
from ...room_frames import ROOMS_VERSION
from .. import message_ids
from ..operations.counts import COUNTS
from ..presence.devices import Devices, _Device
from ..presence.directory import LocalDirectory
from ..replies import OK
from ..rooms.registry import Rooms
from ..rules import Rules
from ..storage.quotas import DailyBytes
from ..storage.store import StoreUnavailable
from .fanout import offer_each
from .outbox import SLOTS_IN_C, Outbox, send_queued

try:
    from . import _relay as compiled  # (built from _relay.c where the install found a compiler)
except ImportError:
    compiled = None  # type: ignore[assignment]
if codec.compiled is None or message_ids.compiled is None:
    compiled = None  # (it makes a message's id and DIRECT-MESSAGE frame with their C)

# What the C reads, by slot, in its order (see known_relay in _relay.c).
_RULES_SLOTS = (
    "name",
    "held",
    "_registered",
    "_devices",
    "_directory",
    "_accounts",
    "_version",
    "_rooms",
    "_history_key",
)
_SENDTO_SLOTS = ("recipient", "text", "raw")
_SESSION_SLOTS = ("rules", "_outbox", "wants_ids")
_DEVICES_SLOTS = ("_devices", "contacts", "away", "elsewhere")
_QUOTA_SLOTS = ("_limit", "_day", "_bytes")
_DEVICE_SLOTS = ("session",)

# relay_text(rules, recipient, text, raw) -> True where the common way relayed it (answered
# OK); False where the Python must (also until compiled_relay has told the C what it reads).
relay_text: Callable[[Rules, str, str, bytes], bool] | None = None if compiled is None else compiled.relay_text


def compiled_relay(session_type: type) -> Callable[[list, int, int, object], int] | None:
    """answer_sendtos(events, start, stop, session) -> the index of the first event it left to
    the Python, for a session of session_type (or of a type made from it), delivering to such
    sessions (whose deliver must be session_type's); None where _relay.c was not built."""
    if compiled is None:
        return None
    compiled.known_relay(
        Rules,
        _slots(Rules, _RULES_SLOTS),
        SendTo,
        _slots(SendTo, _SENDTO_SLOTS),
        session_type,
        _slots(session_type, _SESSION_SLOTS),
        Devices,
        _slots(Devices, _DEVICES_SLOTS),
        _slots(_Device, _DEVICE_SLOTS),
        incoming_frame,
        codec.compiled.direct_message,
        message_ids.compiled.take_id_at,
        OK,
        MAX_TEXT_CHARS,
        Outbox,
        SLOTS_IN_C,
        send_queued,
    )
    # A SENDTO to a room of this server from one of its members: posted as Rooms.post does.
    compiled.known_rooms(
        Rooms,
        LocalDirectory,
        codec.room_message_frame,
        offer_each,
        COUNTS,
        StoreUnavailable,
        ROOMS_VERSION,
        DailyBytes,
        _slots(DailyBytes, _QUOTA_SLOTS),
    )
    return compiled.answer_sendtos


def compiled_privmsg_relay(
    privmsg_type: type,
    to_name: Callable[[str], str | None],
    to_room: Callable[[str], str | None],
    session_type: type,
    client_slot,
) -> Callable[[list, int, int, object], int] | None:
    """answer_privmsgs(events, start, stop, session) -> the index of the first event it left
    to the Python: for a session of the IRC port (session_type, its IrcClient in client_slot),
    its PRIVMSGs to one nick or channel (privmsg_type: a tuple of tags, target, text and raw;
    to_name: a nick's user; to_room: a channel's room), relayed the common way as
    IrcClient.answer would, for a client that asked for no echo, to a user not away or to a
    room of the sender's; None where not built."""
    if compiled is None:
        return None
    compiled.known_privmsg(privmsg_type, to_name, to_room, session_type, client_slot)
    return compiled.answer_privmsgs


def _slots(kind: type, names: tuple[str, ...]) -> tuple:
    return tuple(vars(kind)[name] for name in names)
