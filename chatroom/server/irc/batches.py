"""Lines grouped as one reply: IRCv3's batch, and labeled-response, which answers a client's
labeled command with exactly one labeled message (a line, a batch, or ACK).

Lines here are encoded lines (CR LF included); tags are added in front of what a line has.
"""

from itertools import count

from .lines import encode_line, with_tags
from .nicks import SERVER_NAME
from .translate import IRC_LINES, irc_frame

_batch_ids = count(1)


def new_batch_id() -> str:
    return f"b{next(_batch_ids)}"


def batch(kind: str, params: tuple[str, ...], lines: list[bytes], batch_id: str | None = None) -> list[bytes]:
    """lines as a batch of kind (with its parameters), each tagged with the batch's id."""
    batch_id = batch_id or new_batch_id()
    start = encode_line("BATCH", "+" + batch_id, kind, *params, source=SERVER_NAME, text=False)
    end = encode_line("BATCH", "-" + batch_id, source=SERVER_NAME, text=False)
    return [start, *(with_tags(line, {"batch": batch_id}) for line in lines), end]


def labeled(reply: bytes, label: str) -> bytes:
    """The reply (frames) to a command labeled ``label``: its IRC lines as one labeled
    message, ACK if there are none. Frames of other kinds (messages handed out with the
    reply, such as those kept for a login) follow it as they are."""
    lines: list[bytes] = []
    others = []
    offset = 0
    while offset < len(reply):
        end = offset + 5 + int.from_bytes(reply[offset + 1 : offset + 5], "big")
        if reply[offset] == IRC_LINES:
            lines += reply[offset + 5 : end].splitlines(keepends=True)
        else:
            others.append(reply[offset:end])
        offset = end
    if not lines:
        labeled_lines = [with_tags(encode_line("ACK", source=SERVER_NAME), {"label": label})]
    elif len(lines) == 1:
        labeled_lines = [with_tags(lines[0], {"label": label})]
    elif _one_batch(lines):
        labeled_lines = [with_tags(lines[0], {"label": label}), *lines[1:]]
    else:
        first, *rest = batch("labeled-response", (), lines)
        labeled_lines = [with_tags(first, {"label": label}), *rest]
    return irc_frame(b"".join(labeled_lines)) + b"".join(others)


def _one_batch(lines: list[bytes]) -> bool:
    """Whether lines are one whole batch (which a label may tag as it is)."""
    first, last = lines[0].split(b" "), lines[-1].split(b" ")
    return (
        len(first) > 2
        and first[1] == b"BATCH"
        and first[2].startswith(b"+")
        and len(last) > 2
        and last[1] == b"BATCH"
        and last[2].rstrip(b"\r\n") == b"-" + first[2][1:]
    )
