"""The chat server: a gevent StreamServer that hands each accepted client to a Session."""

import errno
import logging

import gevent
from gevent import ssl
from gevent.event import Event
from gevent.server import StreamServer

from ..protocol import DEFAULT_PORT
from . import sockets
from .directory import Directory, LocalDirectory
from .limits import Limits
from .session import Session

log = logging.getLogger(__name__)

# accept() errors that mean "no resources for another connection right now".
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_PAUSE = 0.1


class ChatServer:
    """Serves clients on one address; presence and routing go through ``directory``."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        directory: Directory | None = None,
        limits: Limits | None = None,
        tls: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ):
        self.directory: Directory = directory if directory is not None else LocalDirectory()
        self.limits = limits or Limits()
        self._tls = tls
        self._sessions: set[Session] = set()
        self._all_ended = Event()  # set when the last session ends during stop()
        self._stopping = False
        if reuse_port:
            self._server = _Listener(sockets.reusable_listener(host, port), self._handle)
        else:
            self._server = _Listener((host, port), self._handle, backlog=sockets.BACKLOG)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually listened on; the port is real even when 0 was asked for."""
        return self._server.address[0], self._server.server_port

    def start(self) -> None:
        """Bind, start the directory, and start accepting; raises OSError if the address
        cannot be used."""
        self._server.init_socket()
        self.directory.start()
        self._server.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting, end every connection, wait up to timeout for them to close, and
        stop the directory."""
        self._server.close()
        self._stopping = True
        if self._sessions:
            for session in list(self._sessions):
                session.disconnect()
            self._all_ended.wait(timeout)
        self.directory.stop()

    def _handle(self, sock, address):
        peer = f"{address[0]}:{address[1]}"
        if len(self._sessions) >= self.limits.max_clients:
            log.warning("refused %s: already serving %d clients (--max-clients)", peer, len(self._sessions))
            sock.close()
            return
        sockets.tune(sock)
        if self._tls is not None:
            try:
                sock = sockets.tls_handshake(sock, self._tls)
            except (OSError, gevent.Timeout) as err:
                log.info("TLS handshake with %s failed: %s", peer, getattr(err, "reason", None) or err)
                return
        session = Session(sock, peer, self.directory, self.limits, self._ended)
        self._sessions.add(session)
        session.start()

    def _ended(self, session):
        self._sessions.discard(session)
        if self._stopping and not self._sessions:
            self._all_ended.set()


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
