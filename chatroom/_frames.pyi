"""The server's reading of SENDTO frames compiled in C (_frames.c): see codec.Decoder; and its
INCOMING, DIRECT-MESSAGE and ROOM-MESSAGE frames made (codec.incoming_frame,
direct_message_frame, room_message_frame)."""

from typing import Any

def sendto_frames(
    data: bytes | bytearray, offset: int, events: list, sendto: type, descriptors: tuple, max_body: int
) -> int: ...
def direct_message_frame(sender: str, message_id: int, time_ms: int, text: bytes) -> bytes: ...
def incoming_frame(sender: str, text: bytes) -> bytes: ...
def room_message_frame(room: str, sender: str, message_id: int, time_ms: int, text: bytes) -> bytes: ...

direct_message: Any  # (a capsule: the C of direct_message_frame, for _relay.c)
