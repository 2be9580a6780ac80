"""The compiled loops of the IRC port (_speedups.c): see lines.read_messages and
translate.to_irc for what each stands in for."""

from collections.abc import Callable

def read_messages(
    data: bytes,
    end: int,
    privmsg: type,
    message: Callable[[bytes], object],
    too_long: Callable[[], object],
    max_received: int,
    max_line: int,
) -> list: ...
def direct_lines(
    data: bytes,
    offset: int,
    middle: bytes,
    sources: dict[bytes, bytes],
    max_line: int,
    tags: int = 0,
    is_account: Callable[[str], bool] | None = None,
) -> tuple[bytes, int]: ...
def chunk_lines(
    chunks: list[bytes],
    index: int,
    made: dict[bytes, bytes],
    own_source: bytes,
    taken: frozenset[str] | None,
    tagged: dict[frozenset[str], dict[bytes, bytes]],
    middle: bytes,
    sources: dict[bytes, bytes],
    channels: dict[bytes, bytes],
    max_line: int,
    tags: int,
    is_account: Callable[[str], bool] | None,
    echoing: bool,
) -> tuple[bytes, int]: ...
def known_lines(
    made: dict[bytes, bytes],
    tagged: dict[frozenset[str], dict[bytes, bytes]],
    sources: dict[bytes, bytes],
    channels: dict[bytes, bytes],
    max_line: int,
) -> None: ...
def lines_for(chunks: list[bytes], reader: object) -> bytes | None: ...
