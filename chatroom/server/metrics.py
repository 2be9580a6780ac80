"""What an operator can watch: counters the server keeps, and /metrics and /health over HTTP.

The hot path bumps plain integers (:data:`COUNTS`), a few per batch of frames rather than per
message where it can: a prometheus_client Counter takes a lock on every increment, which at
hundreds of thousands of messages a second would cost more than the 5% allowed. The figures
become Prometheus metrics only when /metrics is scraped, through :class:`ServerCollector`.
The HTTP side is gevent's pywsgi with prometheus_client's WSGI app: cooperative, on the hub,
no thread.
"""

import bisect
import logging

from gevent.pywsgi import LoggingLogAdapter, WSGIServer
from prometheus_client import make_wsgi_app
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ..protocol import HISTORY_PAGE, RESPONSE, USER_LIST, SendTo, Status

log = logging.getLogger(__name__)


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

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


HANDOVER_SAMPLE = 16  # one batch in so many is timed for chatroom_sendto_handover_seconds
_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Counts:
    """The server's counters: plain integers, bumped where things happen."""

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
    )

    def __init__(self):
        self.accepted = 0
        self.refused: dict[str, int] = {}  # by reason: max_clients, per_ip, handshakes, idle
        self.disconnects: dict[str, int] = {}  # by reason: peer_closed, stalled, frame_timeout, ...
        self.frames = 0  # every frame received
        self.batches = 0  # reads that brought frames
        self.frames_by_type: dict[str, int] = {}  # every type but SENDTO (the rest)
        self.replies: dict[str, int] = {}  # every status but OK, and lists, histories
        self.unrelayed = 0  # SENDTOs not handed over (the rest of the SENDTOs were)
        self.cross_node = 0  # messages handed to another node
        self.bytes_in = 0
        self.bytes_out = 0
        self.stalled_drops = 0
        self.rate_limit_waits = 0
        self.redis_errors = 0
        self.redis_round_trip = Histogram(_SECONDS)
        self.handover = Histogram(_SECONDS)  # from a batch's arrival to its SENDTOs handed over

    def count(self, table: dict, key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def count_reply(self, reply: bytes, request) -> None:
        """A reply other than the plain OK (which is counted by difference)."""
        if type(request) is SendTo:
            self.unrelayed += 1
        if reply[0] == RESPONSE and len(reply) == 6:
            key = Status(reply[5]).name.lower()
        else:
            key = _REPLY_KINDS.get(reply[0], "ok")  # (an OK with stored messages after it)
        self.count(self.replies, key)


_REPLY_KINDS = {USER_LIST: "list", HISTORY_PAGE: "history"}
COUNTS = Counts()


class ServerCollector:
    """Turns COUNTS and the server's state into Prometheus metrics when scraped."""

    def __init__(self, server, counts: Counts = COUNTS):
        self._server = server
        self._counts = counts

    def collect(self):
        counts, server = self._counts, self._server
        connections = GaugeMetricFamily("chatroom_connections_open", "Connections open", labels=["transport"])
        for transport, number in sorted(server.connections_by_transport().items()):
            connections.add_metric([transport], number)
        yield connections
        yield GaugeMetricFamily("chatroom_users_logged_in", "Users logged in here", value=server.users_logged_in())
        yield CounterMetricFamily("chatroom_connections_accepted", "Connections accepted", value=counts.accepted)
        yield _by_label(
            "chatroom_connections_refused", "Connections refused or closed unheard", "reason", counts.refused
        )
        yield _by_label("chatroom_disconnects", "Connections ended", "reason", counts.disconnects)
        frames = dict(counts.frames_by_type)
        frames["sendto"] = counts.frames - sum(frames.values())
        yield _by_label("chatroom_frames_received", "Frames received", "type", frames)
        replies = dict(counts.replies)
        replies["ok"] = replies.get("ok", 0) + counts.frames - sum(counts.replies.values())
        yield _by_label("chatroom_replies", "Replies sent", "status", replies)
        relayed = frames["sendto"] - counts.unrelayed
        routes = {"same_node": relayed - counts.cross_node, "cross_node": counts.cross_node}
        yield _by_label("chatroom_messages_relayed", "Messages handed over", "route", routes)
        yield CounterMetricFamily("chatroom_received_bytes", "Bytes received", value=counts.bytes_in)
        yield CounterMetricFamily("chatroom_sent_bytes", "Bytes sent", value=counts.bytes_out)
        yield GaugeMetricFamily("chatroom_send_queue_bytes", "Bytes queued for clients", value=server.queued_bytes())
        yield CounterMetricFamily(
            "chatroom_stalled_drops", "Clients dropped for not reading", value=counts.stalled_drops
        )
        yield CounterMetricFamily(
            "chatroom_rate_limit_waits", "Times --rate-limit held a client", value=counts.rate_limit_waits
        )
        yield CounterMetricFamily("chatroom_redis_errors", "Redis requests that failed", value=counts.redis_errors)
        yield counts.redis_round_trip.family("chatroom_redis_round_trip_seconds", "Redis round trips")
        yield counts.handover.family(
            "chatroom_sendto_handover_seconds",
            f"From a batch of frames arriving to its SENDTOs handed over (one batch in {HANDOVER_SAMPLE})",
        )


def _by_label(name, documentation, label, values):
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def serve(host: str, port: int, server) -> WSGIServer:
    """Serve /metrics and /health for server on host:port; the WSGIServer, started."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    metrics_app = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/health":
            healthy, why = server.health()
            start_response("200 OK" if healthy else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [why.encode() + b"\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics or /health\n"]

    # What pywsgi reports is a bad request from the network (an error of the app itself goes
    # to the hub, with its traceback): worth a line, not an ERROR.
    http = WSGIServer((host, port), app, log=None, error_log=LoggingLogAdapter(log, logging.INFO))
    http.start()
    return http
