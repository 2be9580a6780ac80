"""The relay's common case compiled in C (_relay.c): see relay.py."""

from collections.abc import Callable
from typing import Any

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
    direct_message: Any,
    take_id_at: Any,
    ok: bytes,
    max_text_chars: int,
    outbox_type: type,
    outbox_slots: tuple,
    send_queued: Callable[[Any], None],
) -> None: ...
def known_rooms(
    rooms_type: type,
    directory_type: type,
    room_message_frame: Callable[[str, str, int, int, bytes], bytes],
    offer_each: Callable[[Any, bytes], int],
    counts: Any,
    store_unavailable: type,
    rooms_version: int,
    quota_type: type,
    quota_slots: tuple,
) -> None: ...
def answer_sendtos(events: list, start: int, stop: int, session: Any) -> int: ...
def relay_text(rules: Any, recipient: str, text: str, raw: bytes) -> bool: ...
def known_privmsg(
    privmsg_type: type,
    to_name: Callable[[str], str | None],
    to_room: Callable[[str], str | None],
    session_type: type,
    client_slot: Any,
) -> None: ...
def answer_privmsgs(events: list, start: int, stop: int, session: Any) -> int: ...
