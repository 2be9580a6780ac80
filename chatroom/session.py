"""One client's connection on the server: read frames, answer each, relay messages.

A Session runs in its own greenlet. It answers every frame with exactly one reply, in order,
and is also the mailbox other sessions deliver to while its user is logged in.
"""

import logging
import socket

from .codec import Decoder, encode
from .directory import DirectoryUnavailable
from .outbox import Outbox
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


class Session:
    def __init__(self, sock, peer: str, directory, sendq: int, send_timeout: float):
        self.peer = peer
        self.name = None
        self._sock = sock
        self._directory = directory
        self._send_timeout = send_timeout
        self._decoder = Decoder.for_server()
        self._outbox = Outbox(sock, sendq)

    def run(self) -> None:
        log.info("connect %s", self.peer)
        try:
            self._serve()
        except OSError:
            pass  # the peer reset or vanished: an ordinary end of a connection
        finally:
            self._log_out("disconnected")
            self._outbox.finish(self._send_timeout)
            self._outbox.close()
            log.info("disconnect %s", self.peer)

    def _serve(self):
        decoder = self._decoder
        outbox = self._outbox
        while True:
            data = self._sock.recv(RECV_SIZE)
            if not data:
                return
            for event in decoder.receive_data(data):
                outbox.put(self._answer(event))
            outbox.flush()
            if decoder.broken:
                log.info("%s sent a frame over the size limit; closing", self.peer)
                return

    def disconnect(self) -> None:
        """End this connection from outside its greenlet (the greenlet cleans up)."""
        self._outbox.close()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- Mailbox ------------------------------------------------------------------------

    def deliver(self, sender: str, text: str) -> bool:
        outbox = self._outbox
        if not outbox.has_room() and not outbox.wait_for_room(self._send_timeout):
            if not outbox.closed:
                log.warning("%s (%s) is not reading; disconnecting", self.name, self.peer)
                self.disconnect()
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
        if self.name is None or not is_valid_username(recipient) or not is_valid_text(text):
            return FAILURE
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
