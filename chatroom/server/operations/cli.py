"""``chatroom-server``: parse the command line, set up logging and signals, run a ChatServer.

chatroom-server [--config FILE] [--host H] [--port P] [--log-level L] [--log-format F] [limits]
                [--metrics HOST:PORT] [--redis URL] [--reuse-port] [--tls-cert F --tls-key F]

Signals: SIGINT and SIGTERM drain and stop; SIGHUP reloads the TLS certificate and key.
Under systemd (Type=notify) it says READY=1 once listening and STOPPING=1 when it drains.
"""

import argparse
import logging
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import gevent
from gevent import ssl
from gevent.event import Event

from ... import __version__
from ...arguments import port_number
from ...protocol import DEFAULT_PORT
from ..connection import limits as limit_options
from ..connection.chatserver import DRAIN_TIMEOUT, ChatServer
from ..connection.sockets import raise_file_limit, tls_context
from ..presence.directory import Directory
from ..storage import quotas as quota_options
from ..storage.accounts import Accounts
from ..storage.quotas import Quotas
from ..storage.sqlite_store import SQLiteStore
from ..storage.store import DEFAULT_HISTORY_DAYS, Store, StoreUnavailable, default_db_path
from .config import as_toml, parse_with_config
from .logs import configure as configure_logging
from .logs import fields
from .memory import frame_stacks_from_the_heap, settle_collector
from .metrics import serve as serve_metrics

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatroom-server", description="Run a chatroom server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="FILE", help="settings in TOML: any long option, by name")
    parser.add_argument("--print-config", action="store_true", help="print the settings in effect, as TOML, and exit")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument(
        "--port", type=port_number(lowest=0), default=DEFAULT_PORT, help="port to listen on, 0 for any free one"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold",
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="text, or one JSON object per line"
    )
    web = parser.add_argument_group("browser client")
    web.add_argument(
        "--web",
        metavar="HOST:PORT",
        type=host_and_port,
        help="serve the browser client's page and its WebSocket at http://HOST:PORT/ (TLS too with --tls-cert)",
    )
    web.add_argument(
        "--web-origin",
        metavar="ORIGIN",
        action="append",
        help="an origin allowed to open the WebSocket, e.g. https://chat.example.org (repeatable; default: "
        "the page's own)",
    )
    parser.add_argument(
        "--irc",
        metavar="HOST:PORT",
        type=host_and_port,
        help="serve IRC clients (irssi, WeeChat, HexChat) at HOST:PORT, as ordinary chatroom users (TLS too with "
        "--tls-cert)",
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        type=host_and_port,
        help="serve Prometheus metrics at http://HOST:PORT/metrics and a health check at /health",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT,
        metavar="SECONDS",
        help="on SIGTERM or SIGINT, time given to clients to take what they were sent (default %(default)s)",
    )
    limit_options.add_arguments(parser.add_argument_group("limits"))
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument(
        "--redis",
        metavar="URL",
        help="join the cluster of servers sharing this Redis (7 or newer; one server, or any node of a Redis "
        "Cluster), e.g. redis://127.0.0.1:6379/0",
    )
    cluster.add_argument(
        "--node-ttl",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --redis: a node silent this long is taken for dead, its users logged out (default %(default)s)",
    )
    cluster.add_argument(
        "--reuse-port", action="store_true", help="let other processes listen on the same port (SO_REUSEPORT)"
    )
    memory = parser.add_argument_group("accounts, offline messages and history")
    memory.add_argument(
        "--db",
        metavar="PATH",
        type=Path,
        default=default_db_path(),
        help="the SQLite database (created on first run; default %(default)s); with --redis, Redis holds it all",
    )
    memory.add_argument(
        "--history-days",
        type=float,
        default=DEFAULT_HISTORY_DAYS,
        metavar="DAYS",
        help="how long offline messages and history are kept (default %(default)s)",
    )
    memory.add_argument("--no-history", action="store_true", help="keep no conversation history")
    quota_options.add_arguments(memory)
    tls = parser.add_argument_group("TLS (both or neither)")
    tls.add_argument("--tls-cert", metavar="FILE", help="certificate chain (PEM); the server then speaks TLS only")
    tls.add_argument("--tls-key", metavar="FILE", help="private key of the certificate (PEM)")
    return parser


def host_and_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise argparse.ArgumentTypeError(f"HOST:PORT, not {text!r}")
    return host.strip("[]"), port_number(lowest=0)(port)


def main(argv=None) -> int:
    parser = build_parser()
    args = parse_with_config(parser, argv)
    if args.redis:
        # redis-py's sockets must wait cooperatively; nothing has made a socket yet.
        from gevent import monkey

        monkey.patch_all(ssl=False)  # our own TLS uses gevent's ssl already
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.print_config:
        print(as_toml(parser, args))
        return 0
    # Session greenlets need not remember who spawned them: less memory, quicker spawns.
    gevent.config.track_greenlet_tree = False
    configure_logging(args.log_level, args.log_format)
    try:
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except (OSError, ssl.SSLError) as err:
        return _fail(f"cannot load the TLS certificate or key: {err}")
    file_limit = raise_file_limit()
    limits = limit_options.from_arguments(args)
    quotas = quota_options.from_arguments(args)
    try:
        server = ChatServer(
            args.host,
            args.port,
            cluster_directory(args.redis, args.node_ttl) if args.redis else None,
            limits,
            tls,
            args.reuse_port,
            Accounts(open_store(args, quotas), quotas=quotas, exempt=exempt_from_quotas(limits)),
            web=args.web,
            web_origins=set(args.web_origin) if args.web_origin else None,
            irc=args.irc,
        )
        server.start()
    except (sqlite3.Error, StoreUnavailable) as err:
        return _fail(f"cannot use the database {args.redis or args.db}: {err}")
    except OSError as err:
        return _fail(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}")
    metrics = None
    if args.metrics:
        metrics_host, metrics_port = args.metrics
        try:
            metrics = serve_metrics(metrics_host, metrics_port, server)
        except OSError as err:
            server.stop(0)
            return _fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {err}")
    settle_collector()
    frame_stacks_from_the_heap()
    _say_listening(server, metrics, tls is not None)
    log.info("open files limit %d, at most %d clients", file_limit, limits.max_clients)
    notify_systemd("READY=1")
    _serve_until_stopped(server, args)
    if metrics is not None:
        metrics.stop()
    return 0


def _fail(reason: str) -> int:
    print(f"chatroom-server: {reason}", file=sys.stderr)
    return 1


def _say_listening(server: ChatServer, metrics, tls: bool) -> None:
    # Always logged, whatever the level: scripts wait for this line to learn the port.
    host, port = server.address
    log.log(
        max(logging.INFO, log.getEffectiveLevel()),
        "Listening on %s:%d%s",
        host,
        port,
        " (TLS)" if tls else "",
        extra=fields("listening", host=host, port=port, tls=tls),
    )
    if metrics is not None:
        log.info("Metrics on http://%s:%d/metrics", metrics.address[0], metrics.server_port)
    if server.web_address is not None:
        log.info("Web client on %s://%s:%d/", "https" if tls else "http", *server.web_address)
    if server.irc_address is not None:
        log.info("IRC on %s:%d%s", *server.irc_address, " (TLS)" if tls else "")


def _serve_until_stopped(server: ChatServer, args) -> None:
    """Serve until SIGINT or SIGTERM (SIGHUP reloads TLS meanwhile), then drain and stop."""
    stopping = Event()
    handlers = [gevent.signal_handler(signum, stopping.set) for signum in (signal.SIGINT, signal.SIGTERM)]
    handlers.append(gevent.signal_handler(signal.SIGHUP, reload_tls, server, args))
    stopping.wait()
    for handler in handlers:
        handler.cancel()
    log.info("shutting down", extra=fields("shutdown", drain_timeout=args.drain_timeout))
    notify_systemd("STOPPING=1")
    server.stop(args.drain_timeout)


def reload_tls(server: ChatServer, args) -> None:
    """SIGHUP: load the certificate and key again; new connections get them, the open ones
    keep theirs. If they cannot be loaded, the old ones stay."""
    if not args.tls_cert:
        log.info("SIGHUP: no TLS to reload")
        return
    try:
        server.tls = tls_context(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as err:
        log.error("SIGHUP: cannot load %s and %s (%s); the certificate in use stays", args.tls_cert, args.tls_key, err)
        return
    log.info(
        "SIGHUP: reloaded the TLS certificate %s and key %s",
        args.tls_cert,
        args.tls_key,
        extra=fields("tls_reloaded", cert=args.tls_cert, key=args.tls_key),
    )


def notify_systemd(state: str) -> None:
    """Tell systemd (Type=notify) how the service stands, when it is listening."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.sendto(state.encode(), address)
    except OSError as err:
        log.warning("cannot notify systemd: %s", err)


def open_store(args, quotas: Quotas) -> Store:
    """Redis with --redis (every node then sees the same accounts), else the SQLite file."""
    if args.redis:
        from ..storage.redis_store import RedisStore

        return RedisStore(args.redis, args.history_days, keep_history=not args.no_history, quotas=quotas)
    try:
        args.db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreUnavailable(f"cannot make its folder {args.db.parent}: {err.strerror}") from err
    return SQLiteStore(args.db, args.history_days, keep_history=not args.no_history, quotas=quotas)


def exempt_from_quotas(limits):
    """Addresses the per-address quotas spare: those --max-per-ip spares (loopback, unless
    --limit-loopback)."""
    return lambda host: not limit_options.counts_per_address(limits, host)


def cluster_directory(url: str, ttl: float) -> Directory:
    """The Redis-backed directory (redis-py is imported only for a cluster)."""
    from ..presence.cluster import RedisDirectory

    return RedisDirectory(url, ttl)
