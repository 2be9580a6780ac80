"""A room's fan-out compiled in C (_fanout.c): see fanout.offer_each, and the hub's send
(outbox.send_queued)."""

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
