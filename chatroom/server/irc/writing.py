"""What an IRC client's lines are written with, worked out from its nickname and capabilities
when those change, not for every send: the translation (translate.to_irc) and its compiled
loop read them."""

from typing import NamedTuple

from .tags import TAG_FLAGS, TAGGING, TAKEN


class Writing(NamedTuple):
    """What a reader's lines are written with (made by writing_for)."""

    to_reader: bytes  # the middle of a message's line to it: b" PRIVMSG nick :"
    own_source: bytes  # the start of the lines it is the source of: b":nick!"
    taken: frozenset[str] | None  # the tags it takes
    tag_flags: int  # ...as the compiled loops' flags
    marking: bool  # (draft/read-marker) every room message's time is noted
    echoing: bool  # (echo-message) its own messages come back to it


def writing_for(nick: str, caps: set[str]) -> Writing:
    taken = TAKEN.get(TAGGING.intersection(caps))  # (None where none: the empty set is no key)
    return Writing(
        f" PRIVMSG {nick} :".encode(),
        f":{nick}!".encode(),
        taken,
        0 if taken is None else TAG_FLAGS[taken],
        "draft/read-marker" in caps,
        "echo-message" in caps,
    )
