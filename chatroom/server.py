"""The chat server: a gevent StreamServer that hands each accepted client to a Session.

chatroom-server [--host H] [--port P] [--log-level L] [limits] [--redis URL]
                [--reuse-port] [--tls-cert F --tls-key F]
"""

import argparse
import errno
import logging
import resource
import signal
import socket
import sys

import gevent
from gevent import socket as gevent_socket
from gevent import ssl
from gevent.event import Event
from gevent.server import StreamServer

from .directory import LocalDirectory
from .limits import Limits
from .limits import add_arguments as add_limit_arguments
from .limits import from_arguments as limits_from_arguments
from .session import Session

log = logging.getLogger("chatroom.server")

DEFAULT_PORT = 5555
TLS_HANDSHAKE_TIMEOUT = 10.0
# Dead peers are found after KEEPIDLE + KEEPCNT * KEEPINTVL = 90 s of silence.
KEEPIDLE, KEEPINTVL, KEEPCNT = 60, 10, 3
# accept() errors that mean "no resources for another connection right now".
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_PAUSE = 0.1
BACKLOG = 4096


class ChatServer:
    """Serves clients on one address; presence and routing go through ``directory``."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        directory=None,
        limits: Limits | None = None,
        tls: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ):
        self.directory = directory if directory is not None else LocalDirectory()
        self.limits = limits or Limits()
        self._tls = tls
        self._sessions = set()
        self._all_ended = Event()  # set when the last session ends during stop()
        self._stopping = False
        if reuse_port:
            self._server = _Listener(_reusable_listener(host, port), self._handle)
        else:
            self._server = _Listener((host, port), self._handle, backlog=BACKLOG)

    @property
    def address(self):
        """(host, port) actually listened on; the port is real even when 0 was asked for."""
        return self._server.address[0], self._server.server_port

    def start(self) -> None:
        """Bind and start accepting; raises OSError if the address cannot be used."""
        self._server.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting, end every connection, and wait up to timeout for them to close."""
        self._server.close()
        self._stopping = True
        if self._sessions:
            for session in list(self._sessions):
                session.disconnect()
            self._all_ended.wait(timeout)

    def _handle(self, sock, address):
        peer = f"{address[0]}:{address[1]}"
        if len(self._sessions) >= self.limits.max_clients:
            log.warning("refused %s: already serving %d clients (--max-clients)", peer, len(self._sessions))
            sock.close()
            return
        _tune(sock)
        if self._tls is not None:
            sock = self._handshake(sock, peer)
            if sock is None:
                return
        session = Session(sock, peer, self.directory, self.limits, self._ended)
        self._sessions.add(session)
        session.start()

    def _ended(self, session):
        self._sessions.discard(session)
        if self._stopping and not self._sessions:
            self._all_ended.set()

    def _handshake(self, sock, peer):
        tls_sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        try:
            with gevent.Timeout(TLS_HANDSHAKE_TIMEOUT):
                tls_sock.do_handshake()
            return tls_sock
        except (OSError, gevent.Timeout) as err:
            log.info("TLS handshake with %s failed: %s", peer, getattr(err, "reason", None) or err)
            tls_sock.close()
            return None


class _Listener(StreamServer):
    """A StreamServer that meets a shortage of file descriptors with a pause, not a traceback,
    and leaves closing a connection to its session (which outlives the accepting greenlet)."""

    _warned = False

    def do_close(self, sock, *args):
        pass

    def do_read(self):
        try:
            return super().do_read()
        except OSError as err:
            if err.errno not in _OUT_OF_RESOURCES:
                raise
            if not self._warned:
                log.warning("cannot accept connections: %s; pausing accept", err.strerror)
                self._warned = True
            self.stop_accepting()
            gevent.spawn_later(_ACCEPT_PAUSE, self._resume)
            return None

    def _resume(self):
        if not self.closed:
            self._warned = False
            self.start_accepting()


def _reusable_listener(host, port):
    """A listening socket that other processes may bind too (SO_REUSEPORT): the kernel spreads
    new connections over all of them."""
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = gevent_socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    return sock


def _tune(sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPIDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPINTVL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPCNT)


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    # gevent's SSLContext, for sockets that wait cooperatively (ssl.create_default_context
    # would make the standard library's, which blocks the whole process in a handshake).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatroom-server",
        description="Run a chatroom server.",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on, 0 for any free one")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold",
    )
    add_limit_arguments(parser.add_argument_group("limits"))
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
    tls = parser.add_argument_group("TLS (both or neither)")
    tls.add_argument("--tls-cert", metavar="FILE", help="certificate chain (PEM); the server then speaks TLS only")
    tls.add_argument("--tls-key", metavar="FILE", help="private key of the certificate (PEM)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Session greenlets need not remember who spawned them: less memory, quicker spawns.
    gevent.config.track_greenlet_tree = False
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    limits = limits_from_arguments(args)
    try:
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except (OSError, ssl.SSLError) as err:
        print(f"chatroom-server: cannot load the TLS certificate or key: {err}", file=sys.stderr)
        return 1
    file_limit = raise_file_limit()
    directory = None
    if args.redis:
        directory = cluster_directory(args.redis, args.node_ttl)
    try:
        server = ChatServer(args.host, args.port, directory, limits, tls, args.reuse_port)
        server.start()
    except OSError as err:
        print(f"chatroom-server: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 1
    if directory is not None:
        directory.start()
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
    server.stop()
    if directory is not None:
        directory.stop()
    return 0


def cluster_directory(url: str, ttl: float):
    """The Redis-backed directory; redis-py's sockets are made cooperative first."""
    from gevent import monkey

    monkey.patch_all(ssl=False)  # our own TLS uses gevent's ssl already
    from .cluster import RedisDirectory

    return RedisDirectory(url, ttl)


if __name__ == "__main__":
    sys.exit(main())
