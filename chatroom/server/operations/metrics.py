"""What an operator can watch: the counters (:mod:`.counts`) and the server's state as
Prometheus metrics at /metrics, and /health, over HTTP.

The figures become Prometheus metrics only when /metrics is scraped, through
:class:`ServerCollector`. The HTTP side is gevent's pywsgi with prometheus_client's WSGI app:
cooperative, on the hub, no thread.
"""

import logging
import time

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer
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
        rooms, memberships = server.rooms.counts() if server.rooms is not None else (0, 0)
        yield GaugeMetricFamily("chatroom_rooms", "Rooms held", value=rooms)
        yield GaugeMetricFamily("chatroom_room_memberships", "Memberships of the rooms held", value=memberships)
        yield CounterMetricFamily("chatroom_room_messages", "Messages sent to rooms", value=counts.room_messages)
        yield CounterMetricFamily(
            "chatroom_room_deliveries", "Room messages handed to members' connections", value=counts.room_deliveries
        )
        yield CounterMetricFamily(
            "chatroom_room_stalls", "Members dropped: a room's message found their queue full", value=counts.room_stalls
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


MAX_SCRAPERS = 8  # connections served at once; more wait in the backlog
SCRAPER_TIMEOUT = 2.0  # a connection silent this long (mid-request) is closed
SCRAPE_CACHE = 1.0  # seconds a scrape's answer is reused: scraping in a loop costs the chat nothing


def serve(host: str, port: int, server) -> WSGIServer:
    """Serve /metrics and /health for server on host:port; the WSGIServer, started."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    metrics = _Cached(make_wsgi_app(registry), SCRAPE_CACHE)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/health":
            healthy, why = server.health()
            start_response("200 OK" if healthy else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [why.encode() + b"\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics or /health\n"]

    http = _MetricsServer((host, port), app, spawn=Pool(MAX_SCRAPERS), log=None, error_log=_QuietErrors())
    http.start()
    return http


class _Handler(WSGIHandler):
    def _check_http_version(self) -> bool:
        # pywsgi reads "HTTP/1" as version (1,) and then its minor version: an IndexError,
        # which it prints with a traceback (a ValueError it takes as the bad request it is).
        try:
            return super()._check_http_version()
        except IndexError:
            return False


class _MetricsServer(WSGIServer):
    handler_class = _Handler

    def handle(self, sock, address):
        sock.settimeout(SCRAPER_TIMEOUT)  # a scraper that stops mid-request gives its place up
        super().handle(sock, address)


class _Cached:
    """A WSGI app whose answer is reused for ``seconds`` (uncompressed, whatever was asked)."""

    def __init__(self, app, seconds: float):
        self._app = app
        self._seconds = seconds
        self._made = -seconds
        self._answer: tuple[str, list, bytes] = ("", [], b"")

    def __call__(self, environ, start_response):
        now = time.monotonic()
        if now - self._made >= self._seconds:
            given: list = []
            environ = {key: value for key, value in environ.items() if key != "HTTP_ACCEPT_ENCODING"}
            body = b"".join(self._app(environ, lambda status, headers, *_: given.extend([status, headers])))
            self._answer, self._made = (given[0], given[1], body), now
        status, headers, body = self._answer
        start_response(status, headers)
        return [body]


class _QuietErrors:
    """pywsgi's error log: what it reports is a bad request from the network (an error of the
    app itself goes to the hub, with its traceback), so it is worth a line, not an ERROR, at
    most one a second, escaped (it may hold anything); the others are counted in the next."""

    def __init__(self):
        self._last = -1.0
        self._quiet = 0  # reports not logged since the last line
        self._summary: gevent.Greenlet | None = None

    def write(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last >= 1.0 and self._summary is None:
            log.info("metrics port: %s", repr(message.strip()[:300]))
            self._last = now
            return
        self._quiet += 1
        if self._summary is None:
            self._summary = gevent.spawn_later(max(0.0, self._last + 1.0 - now), self._summarise)

    def _summarise(self) -> None:
        log.info("metrics port: %d more reports of bad requests in the last second", self._quiet)
        self._last, self._quiet, self._summary = time.monotonic(), 0, None

    def writelines(self, lines) -> None:
        self.write("".join(lines))

    def flush(self) -> None:
        pass
