"""Output: what a :class:`~.core.Client` says happened, and to whom a front end shows it
(:mod:`.plain` for scripts, :mod:`.screen` for the interactive prompt)."""

from typing import Protocol

from ..device_frames import OwnMessage
from ..protocol import StoredMessage
from ..room_frames import RoomEvent, RoomMessage


class Output(Protocol):
    """Where a client says what happened."""

    def message(self, sender: str, text: str) -> None:
        """A message from another user."""

    def outcome(self, word: str, reason: str | None = None) -> None:
        """The seed's word for a result (``Success``, ``Failure``, ``Bad username``...), with
        the reason where the client can know it."""

    def names(self, names: tuple) -> None:
        """The answer to ``list``."""

    def sent(self, recipient: str, text: str, word: str, reason: str | None) -> None:
        """One's own message and how its sending went (the seed's word, and why)."""

    def usage(self) -> None: ...

    def away(self) -> None:
        """Messages kept while we were away follow (once per login, before the first)."""

    def stored(self, message: StoredMessage) -> None:
        """A message kept for us while we were away."""

    def history(self, peer: str, entries: tuple) -> None: ...

    def room_message(self, message: RoomMessage, mine: bool) -> None:
        """A message in a room one is in (one's own too: they come in the room's one order)."""

    def room_event(self, event: RoomEvent) -> None:
        """Someone joined, left, was removed; the topic or the rules changed."""

    def rooms(self, entries: tuple) -> None:
        """The answer to ``rooms``."""

    def members(self, room: str, members: tuple) -> None:
        """The answer to ``members``."""

    def topic(self, room: str, topic: str) -> None: ...

    def room_history(self, room: str, entries: tuple) -> None: ...

    def search_results(self, found: tuple, me: str) -> None:
        """The answer to ``search``, newest first."""

    def own_message(self, message: OwnMessage) -> None:
        """A message one sent from another of one's sessions."""

    def sessions(self, entries: tuple) -> None:
        """The answer to ``sessions``: one's devices."""

    def unread(self, entries: tuple) -> None:
        """At login: what came in each conversation after what one last read (UnreadEntry)."""

    def notice(self, text: str) -> None:
        """Something the user should know that is not an answer (a cancel, a reply that did
        not come)."""

    def warning(self, text: str) -> None:
        """A problem with the connection or the input, not an answer to a command."""
