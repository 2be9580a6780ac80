"""Socket chores of the server: listening, tuning accepted connections, TLS, ending them.

Kept apart so that the session and its outbox deal in frames (through :mod:`.streams`),
not in socket options.
"""

import resource
import socket
import struct
import sys
import time
from collections.abc import Callable

import gevent
from gevent import socket as gevent_socket
from gevent import ssl
from gevent.socket import wait_read

BACKLOG = 4096
TLS_HANDSHAKE_TIMEOUT = 10.0
# After a server-side close: how long, and how much, to read and drop of what the client still
# sends, so that closing does not reset the connection under replies it has not read yet.
LINGER_TIMEOUT = 2.0
LINGER_BYTES = 1 << 20
QUIET_CLIENT = 0.05  # a client that sends nothing this long after the FIN is not sending
# Dead peers are found after KEEPIDLE + KEEPCNT * KEEPINTVL = 90 s of silence.
KEEPIDLE, KEEPINTVL, KEEPCNT = 60, 10, 3
_LINGER_OFF = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection
_RECORD_HEADER, _HANDSHAKE_RECORD, _MAX_RECORD = 5, 0x16, 16384 + 2048  # TLS (RFC 8446 5.1)


def reusable_listener(host: str, port: int):
    """A listening socket that other processes may bind too (SO_REUSEPORT): the kernel spreads
    new connections over all of them."""
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = gevent_socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    return sock


# Linux hands these options down from a listening socket to the connections it accepts: set
# once on the listener, they cost a connection nothing (five system calls a connection were a
# tenth of a connect and login).
TUNED_BY_LISTENER = sys.platform.startswith("linux")


def tune(sock) -> None:
    """No Nagle delays; TCP keepalive, so that a peer that vanished is noticed. On a listener
    (Linux: see TUNED_BY_LISTENER), or on each connection."""
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
    """A server context for this certificate chain and key; raises OSError or ssl.SSLError."""
    # gevent's SSLContext, for sockets that wait cooperatively (ssl.create_default_context
    # would make the standard library's, which blocks the whole process in a handshake).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def tls_handshake(sock, context: ssl.SSLContext):
    """The TLS socket over sock once the handshake is done; raises OSError or gevent.Timeout,
    or whatever kills the greenlet meanwhile (sock is closed then).

    No TLS state is built before the client's whole first record (its ClientHello) has
    arrived: a connection that says nothing, or stalls inside its ClientHello, costs its socket
    and its greenlet, not the tens of KB of a TLS connection.
    """
    try:
        with gevent.Timeout(TLS_HANDSHAKE_TIMEOUT):
            _wait_for_first_record(sock)
            tls_sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            try:
                tls_sock.do_handshake()
            except BaseException:
                tls_sock.close()
                raise
    except BaseException:
        sock.close()
        raise
    return tls_sock


def _wait_for_first_record(sock) -> None:
    """Wait, without reading, until the first TLS record is all there (or is not TLS: then
    the handshake says so). SO_RCVLOWAT makes the socket readable only once that many bytes
    have come, so waiting costs no polling."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, _RECORD_HEADER)
        wait_read(sock.fileno())
        head = sock.recv(_RECORD_HEADER, socket.MSG_PEEK)
        if len(head) == _RECORD_HEADER and head[0] == _HANDSHAKE_RECORD:
            length = min(int.from_bytes(head[3:5], "big"), _MAX_RECORD)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, _RECORD_HEADER + length)
            wait_read(sock.fileno())
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


def shut_down(sock) -> None:
    """End a connection from any greenlet: its reader wakes to an end of stream.

    For a TLS socket this shuts down the TCP connection under it (the plain socket's
    shutdown, not the TLS one's), leaving the TLS object in place for the reader, which then
    sees an ordinary end of stream.
    """
    _shut(sock, socket.SHUT_RDWR)


def discard_unsent(sock) -> None:
    """Make closing sock reset the connection instead of lingering to send what the kernel
    still holds: for a client that stopped reading, whose backlog would only waste memory."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
    except OSError:
        pass


def stop_reading(sock) -> None:
    """Make the reader of sock see an end of stream, while sending still works."""
    _shut(sock, socket.SHUT_RD)


def _shut(sock, how: int) -> None:
    # gevent's socket (and a TLS socket over one) wakes its waiting greenlets itself; the
    # kernel's socket wakes its watchers: it turns readable, and writable, once shut.
    shutdown = gevent_socket.socket.shutdown if isinstance(sock, gevent_socket.socket) else type(sock).shutdown
    try:
        shutdown(sock, how)
    except OSError:
        pass


def read_out(sock, receive: Callable[[], bytes]) -> None:
    """Before closing a connection whose client may still be sending (``receive``: its read
    that waits): FIN first, then read and drop what the client sends until it closes too
    (within LINGER_TIMEOUT and LINGER_BYTES); a client that sends nothing for QUIET_CLIENT is
    done with at once. The caller closes after.

    Closing a socket with unread input makes the kernel reset the connection, and a reset can
    destroy replies the client has received but not yet read.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        budget = LINGER_BYTES
        deadline = time.monotonic() + LINGER_TIMEOUT
        data = _receive_within(receive, QUIET_CLIENT)
        while data and budget > 0 and (left := deadline - time.monotonic()) > 0:
            budget -= len(data)
            data = _receive_within(receive, left)
    except OSError:
        pass


def _receive_within(receive: Callable[[], bytes], seconds: float) -> bytes:
    """What receive() gives within seconds; b"" if nothing came."""
    with gevent.Timeout(seconds, False):
        return receive()
    return b""
