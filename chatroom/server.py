"""The chat server: a gevent StreamServer running one Session greenlet per client.

chatroom-server [--host H] [--port P] [--log-level L]
"""

import argparse
import logging
import signal
import socket
import sys

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.server import StreamServer

from .directory import LocalDirectory
from .session import Session

log = logging.getLogger("chatroom.server")

DEFAULT_PORT = 5555
DEFAULT_SENDQ = 1 << 20
DEFAULT_SEND_TIMEOUT = 5.0
# Dead peers are found after KEEPIDLE + KEEPCNT * KEEPINTVL = 90 s of silence.
KEEPIDLE, KEEPINTVL, KEEPCNT = 60, 10, 3


class ChatServer:
    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        directory=None,
        sendq: int = DEFAULT_SENDQ,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
    ):
        self.directory = directory if directory is not None else LocalDirectory()
        self._sendq = sendq
        self._send_timeout = send_timeout
        self._sessions = set()
        self._greenlets = Pool()  # unbounded; it tracks the session greenlets for stop()
        self._server = StreamServer((host, port), self._handle, spawn=self._greenlets, backlog=4096)

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
        for session in list(self._sessions):
            session.disconnect()
        self._greenlets.join(timeout)
        self._greenlets.kill(block=True, timeout=timeout)

    def _handle(self, sock, address):
        _tune(sock)
        session = Session(sock, f"{address[0]}:{address[1]}", self.directory, self._sendq, self._send_timeout)
        self._sessions.add(session)
        try:
            session.run()
        finally:
            self._sessions.discard(session)


def _tune(sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPIDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPINTVL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPCNT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatroom-server", description="Run a chatroom server.")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on, 0 for any free one (default %(default)s)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold (default %(default)s)",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    server = ChatServer(args.host, args.port)
    try:
        server.start()
    except OSError as err:
        print(f"chatroom-server: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 1
    log.info("Listening on %s:%d", *server.address)

    stopping = Event()
    handlers = [gevent.signal_handler(signum, stopping.set) for signum in (signal.SIGINT, signal.SIGTERM)]
    stopping.wait()
    for handler in handlers:
        handler.cancel()
    log.info("shutting down")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
