"""Why a request failed, in the user's words: the server's reason (extension version 2), or
what the client can tell by itself (a server of an older version says only FAILURE)."""

from ..protocol import MAX_HISTORY_COUNT, MAX_NAME_CHARS, Reason, Response
from .display import escape

_SAID = {
    Reason.INVALID_NAME: "not a valid name",
    Reason.NAME_IN_USE: "{name} is in use",
    Reason.LOOKS_LIKE: "looks like {detail}, who is logged in or registered",
    Reason.WRONG_PASSWORD: "wrong password",
    Reason.TOO_MANY_TRIES: "too many tries: wait {detail} s",
    Reason.NOT_LOGGED_IN: "not logged in",
    Reason.ALREADY_LOGGED_IN: "already logged in as {detail}; logout first",
    Reason.NOT_ONLINE: "{name} is not online",
    Reason.MAILBOX_FULL: "{name}'s mailbox is full",
    Reason.INVALID_TEXT: "a message is 1 to 65535 characters",
    Reason.INVALID_PASSWORD: "a password is 1 to 255 bytes",
    Reason.NAME_REGISTERED: "{name} is registered already",
    Reason.NOT_REGISTERED: "only a registered name, logged in with its password, can do that",
    Reason.UNAVAILABLE: "the server cannot do that now; try again later",
    Reason.NOT_DELIVERED: "{name} is not taking messages",
    Reason.BUSY: "too many password checks for {name} at once; try again",
    Reason.NO_ACCOUNTS: "this server has no accounts or history",
    Reason.INVALID_COUNT: f"at most {MAX_HISTORY_COUNT} messages",
    Reason.REGISTRATION_LIMIT: "too many names registered from your address this hour",
    Reason.INVALID_TOKEN: "the saved login has expired: log in again",
    Reason.INVALID_ROOM: "a room is # and 1-20 characters, no spaces",
    Reason.NO_SUCH_ROOM: "{name}: no such room",
    Reason.NOT_A_MEMBER: "not a member",
    Reason.NOT_OWNER: "only the owner of {name} can do that",
    Reason.INVITE_ONLY: "{name} is invite-only: ask its owner for an invitation",
    Reason.ROOM_FULL: "{name} is full ({detail} members)",
    Reason.TOO_MANY_ROOMS: "too many rooms (at most {detail})",
    Reason.TOO_MANY_SESSIONS: "logged in from too many devices (at most {detail}): end one with sessions end N",
    Reason.NO_SUCH_SESSION: "no such session (see sessions)",
    Reason.TOO_MANY_MARKERS: "read markers are kept for {detail} conversations at most",
}


# A JOIN's LOOKS_LIKE names a room (under another case, or a look-alike), not a person.
_LOOKS_LIKE_A_ROOM = "looks like the room {detail}, which is there already"


def server_reason(reply: Response, name: str = "") -> str | None:
    """The words for a FAILURE's reason (None if it has none); ``name``: the name the request
    was about (the recipient, the name logging in)."""
    if reply.reason is None:
        return None
    said = _SAID[reply.reason]
    if reply.reason is Reason.LOOKS_LIKE and reply.detail.startswith("#"):
        said = _LOOKS_LIKE_A_ROOM
    return said.format(name=escape(name), detail=escape(reply.detail))


def why_not_a_name(name: str) -> str:
    """Why name (refused by is_valid_username) is not a valid username."""
    if not name:
        return "no name given"
    if len(name) > MAX_NAME_CHARS:
        return f"a name is at most {MAX_NAME_CHARS} characters"
    if any(c.isspace() for c in name):
        return "a name has no spaces"
    return "a name has no invisible or control characters"
