"""The chat server: a gevent StreamServer that hands each accepted client to a Session."""

import _socket
import errno
import logging
from typing import Any

import gevent
from gevent import ssl
from gevent.event import Event
from gevent.server import StreamServer

from ...protocol import DEFAULT_PORT
from ..addresses import counted_address
from ..irc.session import IrcSession
from ..operations.logs import fields
from ..operations.memory import keep_trimmed
from ..presence.directory import Directory, LocalDirectory
from ..rooms.registry import Rooms
from ..rooms.shared import SharedRooms
from ..storage.accounts import Accounts
from ..storage.quotas import Quotas
from . import sockets, web
from .admission import Admission
from .limits import Limits
from .session import Session
from .streams import TcpStream, TlsStream

log = logging.getLogger(__name__)

# accept() errors that mean "no resources for another connection right now".
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_PAUSE = 0.1
DRAIN_TIMEOUT = 2.0


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
        accounts: Accounts | None = None,
        web: tuple[str, int] | None = None,
        web_origins: set[str] | None = None,
        irc: tuple[str, int] | None = None,
    ):
        """``accounts``: registered names, offline messages and history; without it, the
        server keeps nothing and refuses registration."""
        self.directory: Directory = directory if directory is not None else LocalDirectory()
        self.accounts = accounts
        # Rooms: the process's own, or in a cluster the ones every node shares through Redis.
        quotas = accounts.quotas if accounts is not None else Quotas()
        self.rooms: Rooms | SharedRooms
        if isinstance(self.directory, LocalDirectory):
            self.rooms = Rooms(accounts.store if accounts is not None else None, quotas)
        else:
            self.rooms = SharedRooms(self.directory, quotas, accounts.store if accounts is not None else None)
        self.limits = limits or Limits()
        self.tls = tls  # replaceable (SIGHUP): new connections take the one in place then
        self._sessions: set[Session] = set()
        self._admission = Admission(self.limits, self._sessions)
        self._all_ended = Event()  # set when the last session ends during stop()
        self._stopping = False
        self._trimming: gevent.Greenlet | None = None  # (see operations.memory)
        self._end_hook = self._ended  # (one bound method for every session, not one each)
        # Without TLS, opening a connection never waits: it is served in the hub, as it is
        # accepted, without a greenlet of its own (a greenlet per connection cost a third of
        # a connect and login).
        # Such a connection is the kernel's socket itself (a TcpStream), not gevent's object.
        inline: dict[str, Any] = {"spawn": None, "plain": True} if tls is None else {}
        self._opening = TcpStream if tls is None else TlsStream
        if reuse_port:
            self._server = _Listener(sockets.reusable_listener(host, port), self._handle, **inline)
        else:
            self._server = _Listener((host, port), self._handle, backlog=sockets.BACKLOG, **inline)
        # The page and the WebSocket, when asked for (web_origins: the origins allowed, by
        # default the page's own).
        self._web = _Listener(web, self._handle_web, backlog=sockets.BACKLOG) if web else None
        self._web_origins = web_origins
        # IRC clients, when asked for: the same sessions, rules and limits, spoken in IRC.
        self._irc = _Listener(irc, self._handle_irc, backlog=sockets.BACKLOG, **inline) if irc else None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually listened on; the port is real even when 0 was asked for."""
        return self._server.address[0], self._server.server_port

    @property
    def web_address(self) -> tuple[str, int] | None:
        if self._web is None:
            return None
        return self._web.address[0], self._web.server_port

    @property
    def irc_address(self) -> tuple[str, int] | None:
        if self._irc is None:
            return None
        return self._irc.address[0], self._irc.server_port

    def start(self) -> None:
        """Bind, start the directory, and start accepting; raises OSError if the address
        cannot be used."""
        self._server.init_socket()
        for extra in (self._web, self._irc):
            if extra is not None:
                extra.init_socket()
        if sockets.TUNED_BY_LISTENER:
            for listener in (self._server, self._web, self._irc):
                if listener is not None:
                    sockets.tune(listener.socket)
        if self.accounts is not None:
            self.accounts.start()
        if self.rooms is not None:
            self.rooms.start()
        self.directory.start()
        self._server.start()
        for extra in (self._web, self._irc):
            if extra is not None:
                extra.start()
        self._trimming = keep_trimmed()

    def stop(self, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        """Stop accepting and reading; give every connection up to drain_timeout to take what
        it was sent (every acknowledged message among it); then close what is left, log what
        it lost, and stop the directory."""
        self._server.close()
        for extra in (self._web, self._irc):
            if extra is not None:
                extra.close()
        self._stopping = True
        if self._trimming is not None:
            self._trimming.kill(block=False)
        self._admission.stop()
        for session in list(self._sessions):
            session.stop_reading()
        if self._sessions:
            self._all_ended.wait(drain_timeout)
        if self._sessions:
            self._give_up_on_the_rest(drain_timeout)
        self.directory.stop()
        if self.accounts is not None:
            self.accounts.stop()  # after the sessions: every message they took is written

    def _give_up_on_the_rest(self, drain_timeout: float) -> None:
        """The connections still open after the drain: what they did not take is kept for
        registered users (all at once, so the store commits them together) and counted."""
        unsent = sum(session.unsent_bytes for session in self._sessions)
        giving_up = [gevent.spawn(session.give_up) for session in list(self._sessions)]
        gevent.joinall(giving_up, timeout=drain_timeout)
        outcomes = [greenlet.value for greenlet in giving_up if greenlet.successful()]
        kept, lost = sum(kept for kept, _ in outcomes), sum(lost for _, lost in outcomes)
        log.warning(
            "%d connections did not take what they were sent in %g s (%d bytes): %d messages kept for "
            "registered users, %d lost",
            len(giving_up),
            drain_timeout,
            unsent,
            kept,
            lost,
            extra=fields("drain_timeout", connections=len(giving_up), unsent=unsent, kept=kept, lost=lost),
        )
        self._all_ended.wait(sockets.LINGER_TIMEOUT)

    def _handle(self, sock, address):
        self._serve(sock, address, self._opening)

    def _handle_irc(self, sock, address):
        self._serve(sock, address, self._opening, IrcSession)

    def _handle_web(self, sock, address):
        assert self._web is not None
        port, secure = self._web.server_port, self.tls is not None

        def opening(connection):
            return web.accept(connection, self._web_origins, secure, port, self.limits.frame_timeout)

        self._serve(sock, address, opening)

    def _serve(self, sock, address, opening, session_class=Session):
        """Admit a new connection, tune it, shake hands (TLS), open it as a Stream (``opening``:
        the WebSocket handshake for the web port), and give it a session."""
        host = counted_address(address[0])
        peer = f"{address[0]}:{address[1]}"
        if not self._admission.admit(host):
            sock.close()
            return
        if opening is TcpStream:
            # Opened at once, in the hub: never among the connections still opening, which
            # the admission may end to make room (its table cost a twentieth of a login).
            stream = self._open(sock, peer, opening)
        else:
            with self._admission.opening(peer):
                stream = self._open(sock, peer, opening)
        if stream is None:
            self._admission.forget(host)
            return
        session = session_class(stream, peer, self.directory, self.limits, self._end_hook, self.accounts, self.rooms)
        self._sessions.add(session)
        session.start()

    def _open(self, sock, peer, opening):
        """The connection as a Stream, once its TLS handshake and ``opening`` are done; None if
        they failed, or it was dropped to make room meanwhile (the socket is closed then)."""
        try:
            if not sockets.TUNED_BY_LISTENER:
                sockets.tune(sock)
            if self.tls is not None:
                with self._admission.handshake(peer):
                    sock = sockets.tls_handshake(sock, self.tls)
        except (OSError, gevent.Timeout, gevent.GreenletExit) as err:
            if not isinstance(err, gevent.GreenletExit):
                log.info("TLS handshake with %s failed: %s", peer, getattr(err, "reason", None) or err)
            sock.close()
            return None
        try:
            return opening(sock)
        except (OSError, gevent.Timeout, gevent.GreenletExit, web.NotWebSocket) as err:
            if isinstance(err, (OSError, gevent.Timeout)):
                log.info("web request from %s failed: %s", peer, err)
            sock.close()
            return None

    # --- What the metrics read ------------------------------------------------------------

    def connections_by_transport(self) -> dict[str, int]:
        counts = {"tcp": 0, "tls": 0, "websocket": 0, "irc": 0}
        for session in self._sessions:
            counts[session.transport] += 1
        return counts

    def users_logged_in(self) -> int:
        return sum(1 for session in self._sessions if session.name is not None)

    def queued_bytes(self) -> int:
        return sum(session.unsent_bytes for session in self._sessions)

    def health(self) -> tuple[bool, str]:
        """(serving, why): not while draining, nor while a shared directory is unreachable."""
        if self._stopping:
            return False, "draining"
        if not self.directory.healthy():
            return False, "directory unreachable"
        if self.accounts is not None and not self.accounts.healthy():
            return False, "degraded: the store cannot write"
        return True, "serving"

    def _ended(self, session):
        self._sessions.discard(session)
        self._admission.forget(session.host)
        if self._stopping and not self._sessions:
            self._all_ended.set()


class _Listener(StreamServer):
    """A StreamServer that meets a shortage of file descriptors with a pause, not a traceback,
    and leaves closing a connection to its session (which outlives the accepting greenlet).
    ``plain``: it hands over the kernel's socket itself, not gevent's object around it."""

    _warned = False

    def __init__(self, listener, handle, plain: bool = False, **kwargs):
        super().__init__(listener, handle, **kwargs)
        self._plain = plain

    def init_socket(self):
        super().init_socket()
        listener = self.socket
        self._kind = (listener.family, listener.type, listener.proto)  # (its connections')

    def do_close(self, sock, *args):
        pass

    def do_read(self):
        try:
            if not self._plain:
                return super().do_read()
            fd, address = self.socket._accept()
            return _socket.socket(*self._kind, fd), address
        except BlockingIOError:
            return None
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
