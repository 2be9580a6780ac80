"""One client's connection on the server: read frames, answer each, relay messages.

A Session runs in its own greenlet. It answers every frame with exactly one reply, in order,
and is also the mailbox other sessions deliver to while its user is logged in.
"""

import logging
import socket
import struct
import time

import gevent

from .codec import Decoder, encode
from .directory import DirectoryUnavailable
from .limits import Limits
from .outbox import Outbox, shut_down
from .protocol import (
    FrameTooLarge,
    Incoming,
    ListUsers,
    Login,
    Logout,
    Malformed,
    Response,
    SendTo,
    Status,
    UserList,
    is_valid_text,
    is_valid_username,
)

log = logging.getLogger("chatroom.server")

OK = encode(Response(Status.OK))
FAILURE = encode(Response(Status.FAILURE))
MALFORMED = encode(Response(Status.MALFORMED))
RECV_SIZE = 65536
FAIR_SHARE = 64  # frames answered before other connections get a turn
_LINGER_OFF = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection


class Session:
    __slots__ = ("peer", "name", "_sock", "_directory", "_limits", "_decoder", "_outbox", "_throttle")

    def __init__(self, sock, peer: str, directory, limits: Limits):
        self.peer = peer
        self.name = None
        self._sock = sock
        self._directory = directory
        self._limits = limits
        self._decoder = Decoder.for_server()
        self._outbox = Outbox(sock, limits.sendq, limits.send_timeout, self._on_stall)
        self._throttle = _Throttle(limits.rate_limit) if limits.rate_limit else None

    def run(self) -> None:
        log.info("connect %s", self.peer)
        try:
            self._serve()
        except OSError:
            pass  # the peer reset or vanished: an ordinary end of a connection
        finally:
            self._log_out("disconnected")
            self._outbox.finish(self._limits.send_timeout)
            self._outbox.close()
            log.info("disconnect %s", self.peer)

    def _serve(self):
        decoder = self._decoder
        outbox = self._outbox
        frame_timeout = self._limits.frame_timeout
        sock = self._sock
        frame_started = None  # when the first byte of the incomplete frame arrived
        while True:
            if frame_started is not None:
                # A frame must not trickle in forever: it would hold its buffer for good.
                sock.settimeout(max(0.001, frame_started + frame_timeout - time.monotonic()))
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                log.info("%s did not complete a frame in %g s; closing", self.peer, frame_timeout)
                return
            if not data:
                return
            had_partial_frame = decoder.pending > 0
            events = decoder.receive_data(data)
            for count, event in enumerate(events, 1):
                if self._throttle is not None:
                    self._throttle.take(outbox)
                outbox.put(self._answer(event))
                if not count % FAIR_SHARE:
                    outbox.flush()
                    gevent.sleep(0)
            outbox.flush()
            if decoder.broken:
                log.info("%s sent a frame over the size limit; closing", self.peer)
                return
            if not outbox.has_room() and not outbox.wait_for_room():
                return
            if not decoder.pending:
                if frame_started is not None:
                    frame_started = None
                    sock.settimeout(None)
            elif events or not had_partial_frame:
                frame_started = time.monotonic()
            # recv() does not yield while data is waiting: without this, a busy client would
            # be served again and again while others wait. Yielding after every batch keeps
            # the service round-robin (and lets more frames gather for each send).
            gevent.sleep(0)

    def _on_stall(self):
        log.warning("%s (%s) is not reading; disconnecting", self.name or "client", self.peer)
        self.disconnect(abort=True)

    def disconnect(self, abort: bool = False) -> None:
        """End this connection from any greenlet (its own greenlet cleans up).

        ``abort`` discards what the kernel still holds for the client, as for one that has
        stopped reading: closing then resets the connection instead of lingering to send.
        """
        self._outbox.close()
        if abort:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
            except OSError:
                pass
        shut_down(self._sock)

    # --- Mailbox ------------------------------------------------------------------------

    def deliver(self, sender: str, text: str, wait: bool = True) -> bool:
        """Queue a message for this client. A full queue makes the caller wait for room (or
        fail, if the client is stalled), unless ``wait`` is false: then the message is queued
        over the limit, and only a client that stops reading is dropped."""
        outbox = self._outbox
        if wait and not outbox.has_room() and not outbox.wait_for_room():
            return False
        if outbox.closed:
            return False
        outbox.push(encode(Incoming(sender, text)))
        return True

    # --- Answers ------------------------------------------------------------------------

    def _answer(self, event) -> bytes:
        kind = type(event)
        try:
            if kind is SendTo:
                return self._send_to(event.recipient, event.text)
            if kind is ListUsers:
                return encode(UserList(tuple(self._directory.names())))
            if kind is Login:
                return self._log_in(event.name)
            if kind is Logout:
                return OK if self._log_out("logged out") else FAILURE
        except DirectoryUnavailable:
            return FAILURE
        assert kind is Malformed or kind is FrameTooLarge, event
        return MALFORMED

    def _send_to(self, recipient, text):
        if self.name is None or not is_valid_text(text):
            return FAILURE
        # No need to validate the recipient's name: only valid names are ever logged in,
        # so an invalid one is simply not found.
        mailbox = self._directory.find(recipient)
        if mailbox is None or not mailbox.deliver(self.name, text):
            return FAILURE
        return OK

    def _log_in(self, name):
        if self.name is not None or not is_valid_username(name):
            return FAILURE
        if not self._directory.claim(name, self):
            return FAILURE
        self.name = name
        log.info("login %s (%s)", name, self.peer)
        return OK

    def _log_out(self, how) -> bool:
        if self.name is None:
            return False
        name, self.name = self.name, None
        try:
            self._directory.release(name, self)
        except DirectoryUnavailable:
            pass  # a shared directory expires names it cannot be told about
        log.info("logout %s (%s, %s)", name, self.peer, how)
        return True


class _Throttle:
    """A token bucket: a connection may send ``rate`` frames a second, in bursts of as many."""

    __slots__ = ("_rate", "_tokens", "_last")

    def __init__(self, rate: float):
        self._rate = rate
        self._tokens = rate
        self._last = time.monotonic()

    def take(self, outbox) -> None:
        """Take a token for one frame, first waiting (with replies so far sent) if none is left."""
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            outbox.flush()
            gevent.sleep((1 - self._tokens) / self._rate)
            self._tokens = 1.0
            self._last = time.monotonic()
        self._tokens -= 1
