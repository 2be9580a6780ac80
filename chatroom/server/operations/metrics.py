"""What an operator can watch: the counters (:mod:`.counts`) and the server's state as
Prometheus metrics at /metrics, and /health, over HTTP.

The figures become Prometheus metrics only when /metrics is scraped, through
:class:`ServerCollector`. The HTTP side is gevent's pywsgi with prometheus_client's WSGI app:
cooperative, on the hub, no thread.
"""

import logging

from gevent.pywsgi import LoggingLogAdapter, WSGIServer
from prometheus_client import make_wsgi_app
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .counts import COUNTS, HANDOVER_SAMPLE, Counts, Histogram

log = logging.getLogger(__name__)


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
        yield _histogram("chatroom_redis_round_trip_seconds", "Redis round trips", counts.redis_round_trip)
        yield _histogram(
            "chatroom_sendto_handover_seconds",
            f"From a batch of frames arriving to its SENDTOs handed over (one batch in {HANDOVER_SAMPLE})",
            counts.handover,
        )


def _histogram(name, documentation, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, buckets=histogram.cumulative(), sum_value=histogram.total)


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
