"""``chatroom-server``: parse the command line, set up logging and signals, run a ChatServer.

chatroom-server [--host H] [--port P] [--log-level L] [limits] [--redis URL]
                [--reuse-port] [--tls-cert F --tls-key F]
"""

import argparse
import logging
import signal
import sqlite3
import sys
from pathlib import Path

import gevent
from gevent import ssl
from gevent.event import Event

from .. import __version__
from ..arguments import port_number
from ..protocol import DEFAULT_PORT
from . import limits as limit_options
from .chatserver import DRAIN_TIMEOUT, ChatServer
from .directory import Directory
from .identity import Accounts
from .sockets import raise_file_limit, tls_context
from .sqlite_store import SQLiteStore
from .store import DEFAULT_HISTORY_DAYS, Store, default_db_path

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatroom-server", description="Run a chatroom server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT,
        metavar="SECONDS",
        help="on SIGTERM or SIGINT, time given to clients to take what they were sent (default %(default)s)",
    )
    limit_options.add_arguments(parser.add_argument_group("limits"))
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument(
        "--redis", metavar="URL", help="join the cluster of servers sharing this Redis, e.g. redis://127.0.0.1:6379/0"
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
    tls = parser.add_argument_group("TLS (both or neither)")
    tls.add_argument("--tls-cert", metavar="FILE", help="certificate chain (PEM); the server then speaks TLS only")
    tls.add_argument("--tls-key", metavar="FILE", help="private key of the certificate (PEM)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    # Session greenlets need not remember who spawned them: less memory, quicker spawns.
    gevent.config.track_greenlet_tree = False
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    limits = limit_options.from_arguments(args)
    try:
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except (OSError, ssl.SSLError) as err:
        print(f"chatroom-server: cannot load the TLS certificate or key: {err}", file=sys.stderr)
        return 1
    file_limit = raise_file_limit()
    directory = cluster_directory(args.redis, args.node_ttl) if args.redis else None
    try:
        accounts = Accounts(open_store(args))
        server = ChatServer(args.host, args.port, directory, limits, tls, args.reuse_port, accounts)
        server.start()
    except sqlite3.Error as err:
        print(f"chatroom-server: cannot use the database {args.db}: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"chatroom-server: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 1
    # Always logged, whatever the level: scripts wait for this line to learn the port.
    log.log(
        max(logging.INFO, log.getEffectiveLevel()), "Listening on %s:%d%s", *server.address, " (TLS)" if tls else ""
    )
    log.info("open files limit %d, at most %d clients", file_limit, limits.max_clients)

    stopping = Event()
    handlers = [gevent.signal_handler(signum, stopping.set) for signum in (signal.SIGINT, signal.SIGTERM)]
    stopping.wait()
    for handler in handlers:
        handler.cancel()
    log.info("shutting down")
    server.stop(args.drain_timeout)
    return 0


def open_store(args) -> Store:
    """Redis with --redis (every node then sees the same accounts), else the SQLite file."""
    if args.redis:
        from .redis_store import RedisStore

        return RedisStore(args.redis, args.history_days, keep_history=not args.no_history)
    args.db.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(args.db, args.history_days, keep_history=not args.no_history)


def cluster_directory(url: str, ttl: float) -> Directory:
    """The Redis-backed directory; redis-py's sockets are made cooperative first."""
    from gevent import monkey

    monkey.patch_all(ssl=False)  # our own TLS uses gevent's ssl already
    from .cluster import RedisDirectory

    return RedisDirectory(url, ttl)
