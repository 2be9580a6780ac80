"""A client's connection to a chat server: requests in, replies and messages out.

A background greenlet reads frames from the server; replies go to :meth:`Connection.request`
in the order they arrive, messages from other users to a callback.
"""

import collections

import gevent
from gevent import socket, ssl
from gevent.event import Event
from gevent.lock import BoundedSemaphore
from gevent.queue import Empty, Queue

from ..codec import PUSHED, Decoder, encode
from ..device_frames import SessionEnded
from ..protocol import FrameTooLarge, Malformed

REPLY_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0

_LOST = object()  # queued in place of a reply when the connection ends
# Why the connection ends after SESSION-ENDED: the user ended this session elsewhere, or here.
SESSION_ENDED = "this session was ended from one of your devices (log in to come back)"


def connect(host: str, port: int, tls: ssl.SSLContext | None = None):
    """A TCP connection to the server, without Nagle delays; over TLS if a context is given.

    Raises OSError (ssl.SSLError for a failed handshake or certificate check).
    """
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        try:
            sock = tls.wrap_socket(sock, server_hostname=host)  # handshakes within the timeout
        except BaseException:
            sock.close()
            raise
    sock.settimeout(None)
    return sock


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Certificate and host name verification on; trust ca_file, else the system's CAs."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # gevent's: it verifies by default
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    else:
        context.load_default_certs()
    return context


class ConnectionLost(Exception):
    """The server closed the connection (or it broke)."""


class NoReply(Exception):
    """The server did not answer a request in time."""


class Connection:
    """A client's connection to a server.

    A background greenlet reads frames: replies are handed to :meth:`request` in order,
    incoming messages to ``on_message``. ``lost`` is set when the server goes away.
    """

    def __init__(self, sock, on_message, on_warning):
        """on_message(message) for each message from another user; on_warning(text) for
        what the server sent that the client ignores."""
        self._sock = sock
        self._on_message = on_message
        self._on_warning = on_warning
        self._replies = Queue()
        # One entry per request sent, in order: whether its reply is still wanted (not when
        # its wait timed out or was cancelled, nor for a request sent unanswered).
        self._expected: collections.deque[list[bool]] = collections.deque()
        self._sending = BoundedSemaphore()  # (the reader sends too: frames must not interleave)
        self._closing = False
        self._sent = False
        self.lost = Event()
        self.lost_reason = "the server closed the connection"
        self._reader = gevent.spawn(self._read)

    def request(self, message, timeout: float = REPLY_TIMEOUT):
        """Send message and return its reply."""
        wanted = self._send(message, wanted=True)
        try:
            reply = self._replies.get(timeout=timeout)
        except Empty:
            wanted[0] = False  # its reply, if it ever comes, must not answer the next request
            raise NoReply() from None
        except BaseException:
            wanted[0] = False  # the wait was cancelled (Ctrl-C): the same
            raise
        if reply is _LOST:
            raise ConnectionLost()
        return reply

    def send_unanswered(self, message) -> None:
        """Send a request whose reply nobody waits for (a read marker); from any greenlet."""
        self._send(message, wanted=False)

    def _send(self, message, wanted: bool) -> list[bool]:
        if self.lost.is_set():
            raise ConnectionLost()
        entry = [wanted]
        with self._sending:
            self._expected.append(entry)
            try:
                self._sock.sendall(encode(message))
            except OSError:
                raise ConnectionLost() from None
        self._sent = True
        return entry

    def give_up(self, reason: str) -> None:
        """End the connection as lost, for reason (a server that is no chatroom server)."""
        self.lost_reason = reason
        self.close()
        self.lost.set()
        self._replies.put(_LOST)

    def close(self) -> None:
        self._closing = True
        self._reader.kill(block=False)
        self._sock.close()

    def _read(self):
        decoder = Decoder.for_client()
        first = b""
        try:
            while data := self._sock.recv(65536):
                first = first or data
                for event in decoder.receive_data(data):
                    if type(event) is not FrameTooLarge:
                        self._dispatch(event)
                if decoder.broken:
                    self.lost_reason = "the server broke the chatroom protocol (a frame longer than allowed)"
                    break
        except OSError as err:
            self.lost_reason = f"the connection broke: {err.strerror or err}"
            # A TLS server resets a connection whose first bytes are no TLS handshake: a
            # reset before any answer to what we sent is the sign of one.
            if isinstance(err, ConnectionResetError) and not first and self._sent:
                self.lost_reason = "the server reset the connection (a TLS server? try --tls)"
        if _looks_like_tls(first):
            self.lost_reason = "the server does not speak the chatroom protocol (a TLS server? try --tls)"
        elif first.startswith(b"HTTP/"):
            self.lost_reason = "the server does not speak the chatroom protocol (it answers like a web server)"
        if not self._closing:
            self.lost.set()
            self._replies.put(_LOST)

    def _dispatch(self, event):
        # Replies are responses and lists; anything else in their place breaks the protocol.
        kind = type(event)
        if kind in PUSHED:
            if kind is SessionEnded:  # (what the end of the connection, next, is)
                self.lost_reason = SESSION_ENDED
            self._on_message(event)
        elif kind is Malformed:
            self._on_warning(f"ignored a malformed frame (type 0x{event.frame_type:02x})")
        elif not self._expected or self._expected.popleft()[0]:
            self._replies.put(event)


def _looks_like_tls(data: bytes) -> bool:
    """Whether data starts like a TLS record (an alert or a handshake, version 3.x): what a
    TLS server answers to a client that speaks plain bytes to it."""
    return len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 0x03
