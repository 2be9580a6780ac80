"""The server's counters: plain integers, bumped where things happen.

The hot path bumps these (:data:`COUNTS`), a few per batch of frames rather than per message
where it can: a prometheus_client Counter takes a lock on every increment, which at hundreds
of thousands of messages a second would cost more than the 5% allowed. They become
Prometheus metrics only when /metrics is scraped (:mod:`.metrics`); the relay path imports
this module only.
"""

import bisect

from ...protocol import SendTo


class Histogram:
    """Counts per bucket, cumulated only when read."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds):
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, count up to it) per bucket, the last one "+Inf"."""
        total, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


HANDOVER_SAMPLE = 16  # one batch in so many is timed for chatroom_sendto_handover_seconds
_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Counts:
    """Every counter of the server."""

    __slots__ = (
        "accepted",
        "refused",
        "disconnects",
        "frames",
        "batches",
        "frames_by_type",
        "replies",
        "unrelayed",
        "cross_node",
        "bytes_in",
        "bytes_out",
        "stalled_drops",
        "rate_limit_waits",
        "redis_errors",
        "redis_round_trip",
        "handover",
        "room_messages",
        "room_deliveries",
        "room_stalls",
    )

    def __init__(self):
        self.accepted = 0
        self.refused: dict[str, int] = {}  # by reason: max_clients, per_ip, handshakes, idle
        self.disconnects: dict[str, int] = {}  # by reason: peer_closed, stalled, frame_timeout, ...
        self.frames = 0  # every frame received
        self.batches = 0  # reads that brought frames
        self.frames_by_type: dict[str, int] = {}  # every type but SENDTO (the rest)
        self.replies: dict[str, int] = {}  # every kind of reply but the plain OK
        self.unrelayed = 0  # SENDTOs not handed over (the rest of the SENDTOs were)
        self.cross_node = 0  # messages handed to another node
        self.bytes_in = 0
        self.bytes_out = 0
        self.stalled_drops = 0
        self.rate_limit_waits = 0
        self.redis_errors = 0
        self.redis_round_trip = Histogram(_SECONDS)
        self.handover = Histogram(_SECONDS)  # from a batch's arrival to its SENDTOs handed over
        self.room_messages = 0  # messages sent to rooms
        self.room_deliveries = 0  # ...and handed to members' connections
        self.room_stalls = 0  # members dropped because a room's message found their queue full

    def count(self, table: dict, key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def count_reply(self, kind: str, request) -> None:
        """A reply other than the plain OK (which is counted by difference) to request; ``kind``
        is the reply's name (failure, stored, list...)."""
        if type(request) is SendTo:
            self.unrelayed += 1
        self.count(self.replies, kind)


COUNTS = Counts()
