"""The hub's loops compiled in C (_fanout.c): a room's fan-out (outbox.offer_each), the hub's send
(outbox.send_queued), the relay's common case (relay.py)."""

from collections.abc import Callable, Iterable
from typing import Any

def offer_each(
    sinks: Iterable,
    data: bytes,
    due: list,
    schedule: Callable[[], None],
    stalled: Callable[[Any], None],
    devices_type: type,
    devices_sinks: Any,
) -> int: ...
def known_outboxes(outbox_type: type, slots: tuple, counts: Any) -> None: ...
def send_queued(outbox: Any) -> None: ...
def known_translation(outbox_type: type, reader_slot: Any, translate: Callable[[list, Any], bytes | None]) -> None: ...
def known_socket_stream(stream_type: type, raw_slot: Any) -> None: ...
def known_relay(
    rules_type: type,
    rules_slots: tuple,
    sendto_type: type,
    sendto_slots: tuple,
    session_type: type,
    session_slots: tuple,
    devices_type: type,
    devices_slots: tuple,
    device_slots: tuple,
    incoming_frame: Callable[[str, bytes], bytes],
    direct_message_frame: Callable[[str, int, int, bytes], bytes],
    next_id: Callable[[], tuple[int, int]],
    ok: bytes,
    max_text_chars: int,
) -> None: ...
def answer_sendtos(events: list, start: int, stop: int, rules: Any, outbox: Any) -> int: ...
def relay_text(rules: Any, recipient: str, text: str, raw: bytes) -> bool: ...
def known_privmsg(privmsg_type: type, to_name: Callable[[str], str | None]) -> None: ...
def answer_privmsgs(events: list, start: int, stop: int, client: Any, rules: Any) -> int: ...
