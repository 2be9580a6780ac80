"""What the server remembers: accounts, messages kept for offline users, conversation history.

The server talks to storage only through :class:`Store`. :class:`~.sqlite_store.SQLiteStore`
(one file, embedded) is the default; :class:`~.redis_store.RedisStore` serves a cluster, so
that every node sees the same accounts and mailboxes.

Every method is called from the hub's greenlets and may yield, but never blocks the hub:
disk work happens in a thread, Redis work on cooperative sockets.
"""

import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import NamedTuple, Protocol

from ...protocol import HistoryEntry, StoredMessage

MAX_OFFLINE = 1000  # messages kept for one offline recipient
DEFAULT_HISTORY_DAYS = 7.0


class StoreUnavailable(Exception):
    """The store cannot answer right now; the request it served gets FAILURE."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def default_db_path() -> Path:
    """$XDG_DATA_HOME/chatroom/chatroom.db, else ~/.local/share/chatroom/chatroom.db."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "chatroom" / "chatroom.db"


class KeptRoom(NamedTuple):
    """A room as the store keeps it: what outlives connections."""

    name: str
    owner: str | None
    topic: str
    invite_only: bool
    members: list[str]  # registered members, longest-standing first
    invited: list[str]
    last_id: int  # of its newest message kept (0: none)


class Store(Protocol):
    # The registered names this server knows of (it may miss one registered elsewhere a
    # moment ago), kept current in place: routing asks it for every message, so it is a
    # plain container, not a call.
    registered_names: Collection[str]

    def start(self) -> None:
        """Open (creating or migrating what is needed) and drop what has expired."""

    def stop(self) -> None:
        """Write everything queued, then close: nothing acknowledged is lost."""

    def healthy(self) -> bool:
        """Whether it can write now (a full disk cannot)."""

    def password_hash(self, name: str) -> str | None:
        """The hash of name's password, asked of the store itself: None if not registered."""

    def create_account(self, name: str, password_hash: str) -> bool:
        """False if the name is registered already."""

    def set_password_hash(self, name: str, password_hash: str) -> None: ...

    def add_token(self, token_hash: str, name: str, expires_ms: int, most: int) -> None:
        """Keep a session token's hash for name until expires_ms, and revoke name's oldest
        tokens past the ``most`` newest (committed on return)."""

    def token_owner(self, token_hash: str) -> str | None:
        """The name a session token was issued to, while it is neither expired nor revoked."""

    def revoke_token(self, token_hash: str) -> None: ...

    def revoke_tokens(self, name: str) -> None:
        """Revoke every session token of name (its password changed)."""

    def keep_offline(self, recipient: str, sender: str, text: str, time_ms: int, message_id: int) -> bool:
        """Keep a message for an offline recipient; False when their mailbox is full."""

    def keep_dropped(self, recipient: str, messages: list[tuple[str, str, int]], time_ms: int) -> int:
        """Keep messages (sender, text, id: 0 if it had none) a recipient was sent but never took, in their order,
        as far as the mailbox has room, all at once; how many were kept."""

    def offline_page(self, name: str, limit: int) -> tuple[int, list[StoredMessage]]:
        """The oldest messages kept for name, up to limit of them, left in the store: (a mark
        to remove them with, once taken; the messages)."""

    def remove_offline(self, name: str, mark: int) -> None:
        """Remove the messages of a page (its mark) once they have been handed over."""

    def record(self, sender: str, recipient: str, text: str, time_ms: int, message_id: int) -> None:
        """Add a message to the history of the conversation between sender and recipient,
        under the id it was relayed with (message_ids)."""

    def history(self, name: str, peer: str, count: int, before: int) -> list[HistoryEntry]:
        """Up to count messages between name and peer with an id below before (0: any),
        oldest first, said since name's account was made; ``sent`` is from name's side."""

    # --- Rooms (registered members, owners, invitations, history) ------------------------------

    def load_rooms(self) -> list[KeptRoom]: ...

    def save_room(self, name: str, owner: str | None, topic: str, invite_only: bool) -> None:
        """Keep (or update) a room's owner, topic and rule (committed on return)."""

    def delete_room(self, name: str) -> None:
        """Forget a room: its members, invitations and history go with it."""

    def add_member(self, room: str, name: str) -> None: ...

    def remove_member(self, room: str, name: str) -> None: ...

    def add_invite(self, room: str, name: str) -> None: ...

    def remove_invite(self, room: str, name: str) -> None: ...

    def record_room(self, room: str, message_id: int, sender: str, text: str, time_ms: int) -> None:
        """Add a message to a room's history (behind the relay)."""

    def room_history(self, room: str, count: int, before: int) -> list[tuple[int, int, str, str]]:
        """Up to count messages (id, time, sender, text) of room with an id below before (0:
        any), oldest first."""

    def search(
        self, name: str, query: str, peer: str | None, rooms: list[str], count: int, before: int
    ) -> list[tuple[int, int, str, str, str]]:
        """name's messages that hold every word of query: (time, id, the conversation: the
        other name or the #room, sender, text), newest first, up to count, older than before
        (ms; 0: now); in the conversation with peer only, if given, and in rooms (those name is
        in). Never another user's conversation, nor what was said before name's account."""

    def set_marker(self, name: str, conversation: str, message_id: int) -> int | None:
        """Move name's marker in conversation (a name or a #room) to message_id, if that is
        further on; the marker now. None, and nothing kept, for a conversation beyond the
        MOST_MARKERS that name has markers for already (a client could otherwise make the store
        keep, and UNREAD list, markers without end)."""

    def unread(self, name: str, rooms: list[str]) -> list[tuple[str, int, int]]:
        """(conversation, marker, what others said after it) for each of name's direct
        conversations and rooms (those given) with a marker or something unread, since name's
        account was made; a count stops at a thousand."""

    def partners(self, name: str) -> list[str]:
        """The people name has a conversation with in the history (in cluster mode, those
        the bounded scan of a search finds)."""
