"""The reply to a SENDTO whose recipient is on another node of a cluster: the session holds it
(and the replies after it, in order) until that node says whether the message got there; then
the rules settle it as they would have at once: OK, kept for later, or UNAVAILABLE."""

from typing import TYPE_CHECKING, final

from ..protocol import Reason
from .replies import OK
from .storage.store import StoreUnavailable

if TYPE_CHECKING:
    from .rules import Rules


@final  # (matched by its exact type on the relay path)
class Pending:
    """The reply to a SENDTO handed to another node, once that node has it (or not)."""

    __slots__ = ("_rules", "_sender", "_recipient", "_text", "_delivered", "_id", "_time", "_history_key")

    def __init__(
        self,
        rules: "Rules",
        sender: str,
        recipient: str,
        text: str,
        delivered,
        message_id: int,
        time_ms: int,
        history_key: str | None,
    ):
        self._rules = rules
        self._sender = sender
        self._recipient = recipient
        self._text = text
        self._delivered = delivered  # an AsyncResult: True once delivered there
        self._id = message_id
        self._time = time_ms
        self._history_key = history_key  # what the history counts it under, if it keeps it (as sent)

    def reply(self) -> bytes:
        """Wait for the other node's answer; the reply frame."""
        try:
            delivered = self._delivered.get()
        except Exception:  # Redis failed: nothing is known to be delivered
            return self._rules._failure(Reason.UNAVAILABLE)
        if delivered:
            self._rules._delivered(self._sender, self._recipient, self._text, self._id, self._time, self._history_key)
            return OK
        try:
            return self._rules._keep_for_later(self._sender, self._recipient, self._text)
        except StoreUnavailable:
            return self._rules._failure(Reason.UNAVAILABLE)
