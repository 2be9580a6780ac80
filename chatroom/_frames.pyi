"""The server's reading of SENDTO frames compiled in C (_frames.c): see codec.Decoder."""

def sendto_frames(
    data: bytes | bytearray, offset: int, events: list, sendto: type, descriptors: tuple, max_body: int
) -> int: ...
