"""The reply frames the chat rules answer with, encoded once, and their names in the metrics."""

from ..codec import encode, reply_status
from ..protocol import (
    EXTENSION_VERSION,
    Authenticate,
    ChangePassword,
    Hello,
    HistoryRequest,
    ListUsers,
    Login,
    Logout,
    Reason,
    Register,
    Response,
    Resume,
    ServerVersion,
    Status,
    TokenRequest,
    Watch,
)

OK = encode(Response(Status.OK))
FAILURE = encode(Response(Status.FAILURE))
MALFORMED = encode(Response(Status.MALFORMED))
REGISTERED = encode(Response(Status.REGISTERED))
SERVER_VERSION = encode(ServerVersion(EXTENSION_VERSION))
STORED = encode(Response(Status.STORED))
# FAILURE with its reason, for clients of extension version 2 or later (when it has no detail).
FAILURES = {reason: encode(Response(Status.FAILURE, reason)) for reason in Reason}
REASONS_VERSION = 2
# The metrics' name for each reply that is one of the constants above.
REPLY_STATUS = {
    OK: "ok",
    FAILURE: "failure",
    MALFORMED: "malformed",
    REGISTERED: "registered",
    STORED: "stored",
    SERVER_VERSION: "version",
}
# The metrics' name for each request (SENDTO, the bulk, is counted by difference).
REQUEST_NAMES = {
    ListUsers: "list",
    Login: "login",
    Logout: "logout",
    Hello: "hello",
    Register: "register",
    Authenticate: "authenticate",
    ChangePassword: "change_password",
    HistoryRequest: "history",
    TokenRequest: "session_token",
    Resume: "resume",
    Watch: "watch",
}


def failure(reason: Reason, detail: str = "") -> bytes:
    """FAILURE with its reason (for a client of REASONS_VERSION or later)."""
    return encode(Response(Status.FAILURE, reason, detail)) if detail else FAILURES[reason]


def reply_name(reply: bytes, request) -> str:
    """The metrics' name for reply, the answer to request: a RESPONSE's or VERSION's by its
    constant, an answer with data by what was asked ("ok": an OK with stored messages after it)."""
    name = REPLY_STATUS.get(reply)
    if name is None and reply_status(reply) is Status.FAILURE:
        return "failure"  # with a reason
    return name or _ANSWER_NAMES.get(type(request), "ok")


_ANSWER_NAMES = {ListUsers: "list", HistoryRequest: "history"}
