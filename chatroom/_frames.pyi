"""The server's reading of SENDTO frames compiled in C (_frames.c): see codec.Decoder; and its
DIRECT-MESSAGE frames made (codec.direct_message_frame)."""

def sendto_frames(
    data: bytes | bytearray, offset: int, events: list, sendto: type, descriptors: tuple, max_body: int
) -> int: ...
def direct_message_frame(head: bytes, message_id: int, time_ms: int, text: bytes) -> bytes: ...
