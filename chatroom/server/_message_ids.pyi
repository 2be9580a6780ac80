"""Ids of direct messages taken in C (_message_ids.c): see message_ids."""

from typing import Any

def next_id() -> tuple[int, int]: ...
def use_node_tag(tag: int) -> None: ...

take_id_at: Any  # (a capsule: the C of next_id for a given time, for _relay.c)
