"""How full each offline user's mailbox is, and whether a message fits: at most MAX_OFFLINE
messages and the quota's bytes in all, and a sender's share of either, so that one stranger
cannot fill it. The SQLite store keeps this in memory (loaded at start, kept on every write)
so that refusing a message never waits for the disk."""

from dataclasses import dataclass, field

from .quotas import Quotas
from .store import MAX_OFFLINE


@dataclass
class _Mailbox:
    count: int = 0
    size: int = 0
    senders: dict[str, list[int]] = field(default_factory=dict)  # sender -> [count, size]


class Mailboxes:
    def __init__(self, quotas: Quotas):
        self._max_size = int(quotas.mailbox_mb * 1_000_000)
        self._share_count = max(1, int(MAX_OFFLINE * quotas.mailbox_share))
        self._share_size = max(1, int(self._max_size * quotas.mailbox_share))
        self._boxes: dict[str, _Mailbox] = {}

    def load(self, rows) -> None:
        """Start from (recipient, sender, count, size) rows."""
        self._boxes = {}
        self._add_rows(rows)

    def reload(self, recipient: str, rows) -> None:
        """Start recipient's mailbox again from its (recipient, sender, count, size) rows."""
        self._boxes.pop(recipient, None)
        self._add_rows(rows)

    def _add_rows(self, rows) -> None:
        for recipient, sender, count, size in rows:
            box = self._boxes.setdefault(recipient, _Mailbox())
            box.count += count
            box.size += size
            box.senders[sender] = [count, size]

    def fits(self, recipient: str, sender: str, size: int) -> bool:
        box = self._boxes.get(recipient)
        if box is None:
            return size <= min(self._max_size, self._share_size)
        mine = box.senders.get(sender, [0, 0])
        return (
            box.count < MAX_OFFLINE
            and box.size + size <= self._max_size
            and mine[0] < self._share_count
            and mine[1] + size <= self._share_size
        )

    def add(self, recipient: str, sender: str, size: int, count: int = 1) -> None:
        box = self._boxes.setdefault(recipient, _Mailbox())
        box.count += count
        box.size += size
        mine = box.senders.setdefault(sender, [0, 0])
        mine[0] += count
        mine[1] += size
        if box.count <= 0:
            del self._boxes[recipient]

    def holds(self, recipient: str) -> bool:
        """Whether recipient's mailbox holds anything."""
        return recipient in self._boxes
