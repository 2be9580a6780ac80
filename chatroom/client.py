"""The terminal chat client: ``chatroom-client [HOST] [PORT]``.

On a terminal it runs an interactive prompt (:mod:`chatroom.terminal`); otherwise it reads
plain lines from stdin, for scripts and tests, with byte-for-byte the same output.
"""

from gevent import monkey

# prompt_toolkit runs an asyncio loop and a writer thread; patched first, they become
# cooperative, so one OS thread serves the prompt and the network alike.
monkey.patch_all()

import argparse  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.fileobject import FileObject  # noqa: E402
from gevent.queue import Empty, Queue  # noqa: E402

from .codec import Decoder, encode  # noqa: E402
from .commands import USAGE, Error, Exit, Help, parse  # noqa: E402
from .display import escape, message_line  # noqa: E402
from .protocol import FrameTooLarge, Incoming, Login, Logout, Malformed, Response, Status, UserList  # noqa: E402

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555
REPLY_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0

_STATUS_WORDS = {Status.OK: "Success", Status.FAILURE: "Failure", Status.MALFORMED: "Malformed packet"}
_LOST = object()  # queued in place of a reply when the connection ends


class ConnectionLost(Exception):
    """The server closed the connection (or it broke)."""


class NoReply(Exception):
    """The server did not answer a request in time."""


class Connection:
    """A client's connection to a server.

    A background greenlet reads frames: replies are handed to :meth:`request` in order,
    incoming messages to ``on_message``. ``lost`` is set when the server goes away.
    """

    def __init__(self, sock, on_message):
        self._sock = sock
        self._on_message = on_message
        self._replies = Queue()
        self._abandoned = 0  # replies still due to requests that timed out
        self._closing = False
        self.lost = Event()
        self._reader = gevent.spawn(self._read)

    def request(self, message, timeout: float = REPLY_TIMEOUT):
        """Send message and return its reply."""
        if self.lost.is_set():
            raise ConnectionLost()
        try:
            self._sock.sendall(encode(message))
        except OSError:
            raise ConnectionLost() from None
        try:
            reply = self._replies.get(timeout=timeout)
        except Empty:
            self._abandoned += 1  # its reply, if it ever comes, must not answer the next request
            raise NoReply() from None
        if reply is _LOST:
            raise ConnectionLost()
        return reply

    def close(self) -> None:
        self._closing = True
        self._reader.kill(block=False)
        self._sock.close()

    def _read(self):
        decoder = Decoder.for_client()
        try:
            while True:
                data = self._sock.recv(65536)
                if not data:
                    break
                for event in decoder.receive_data(data):
                    self._dispatch(event)
                if decoder.broken:
                    break
        except OSError:
            pass
        if not self._closing:
            self.lost.set()
            self._replies.put(_LOST)

    def _dispatch(self, event):
        kind = type(event)
        if kind is Incoming:
            self._on_message(event)
        elif kind is Malformed or kind is FrameTooLarge:
            print(f"chatroom-client: ignored a malformed frame (type 0x{event.frame_type:02x})", file=sys.stderr)
        elif self._abandoned:
            self._abandoned -= 1
        else:
            self._replies.put(event)


class Client:
    """Runs the user's commands against a connection and says what happened.

    ``write`` prints one line. The client remembers who it is logged in as, for the prompt,
    and the names of the last list and of the senders it has seen, for completion.
    """

    def __init__(self, sock, write):
        self._write = write
        self._listed = set()
        self._senders = set()
        self.name = None
        self.connection = Connection(sock, self._show_message)

    @property
    def known_names(self) -> set:
        return self._listed | self._senders

    def _show_message(self, message: Incoming):
        self._senders.add(message.sender)
        self._write(message_line(message.sender, message.text))

    def handle(self, line: str) -> bool:
        """Carry out one input line; False when the user asked to exit."""
        command = parse(line)
        if command is None:
            return True
        if isinstance(command, Exit):
            return False
        if isinstance(command, Help):
            self._write(USAGE)
        elif isinstance(command, Error):
            self._write(command.message)
        else:
            self._request(command)
        return True

    def _request(self, command):
        try:
            reply = self.connection.request(command)
        except NoReply:
            print(f"chatroom-client: no reply from the server in {REPLY_TIMEOUT:g} s", file=sys.stderr)
            return
        if isinstance(reply, UserList):
            self._listed = set(reply.names)
            for name in reply.names:
                self._write(escape(name))
            return
        assert isinstance(reply, Response), reply
        if reply.status is Status.OK:
            if isinstance(command, Login):
                self.name = command.name
            elif isinstance(command, Logout):
                self.name = None
        self._write(_STATUS_WORDS[reply.status])


def connect(host: str, port: int):
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def run_plain(client: Client) -> int:
    """Read commands from a non-terminal stdin until exit or end of input."""
    stdin = FileObject(sys.stdin.fileno(), "rb", close=False)

    def read_commands() -> bool:
        """True on exit or end of input; False if the connection was lost first."""
        try:
            for raw in stdin:
                if not client.handle(raw.decode("utf-8", "replace")):
                    break
        except ConnectionLost:
            return False
        return True

    worker = gevent.spawn(read_commands)
    gevent.wait([worker, client.connection.lost], count=1)
    if worker.ready() and worker.value:
        return 0
    worker.kill()
    raise ConnectionLost()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatroom-client", description="Chat on a chatroom server.")
    parser.add_argument("host", nargs="?", default=DEFAULT_HOST, help="server address (default %(default)s)")
    parser.add_argument("port", nargs="?", type=int, default=DEFAULT_PORT, help="server port (default %(default)s)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sock = connect(args.host, args.port)
    except OSError as err:
        print(f"chatroom-client: cannot connect to {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 1
    sys.stdout.reconfigure(errors="backslashreplace", line_buffering=True)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        from .terminal import run_terminal as run
    else:
        run = run_plain

    def write(line):
        print(line, flush=True)

    client = Client(sock, write)
    try:
        return run(client)
    except ConnectionLost:
        print("chatroom-client: the server closed the connection", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.connection.close()


if __name__ == "__main__":
    sys.exit(main())
