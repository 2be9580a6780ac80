"""chatroom-bench's other devices (--devices): more connections of each registered name, which
only read."""

import gevent
from gevent import socket

from .codec import Decoder, encode
from .protocol import EXTENSION_VERSION, Hello, Response, Resume, Status


class Device:
    """Another connection of a registered name (another of its devices): it logs in with the
    name's session token, then only reads, counting bytes, so that the server hands every message out
    once more at the least cost to the bench."""

    def __init__(self, address, name, token):
        self.sock = socket.create_connection(address)
        self.sock.sendall(encode(Hello(EXTENSION_VERSION)) + encode(Resume(name, token)))
        decoder = Decoder.for_client()
        answers: list = []
        with gevent.Timeout(30, RuntimeError(f"no answer to the login of another device of {name}")):
            while len(answers) < 2:
                answers += [e for e in decoder.receive_data(self.sock.recv(65536)) if type(e) is Response]
        if any(answer.status is not Status.OK for answer in answers[:2]):
            raise RuntimeError(f"the server refused another device of {name}: {answers[:2]}")
        self.bytes = 0
        self._reader = gevent.spawn(self._read)

    def _read(self):
        try:
            while data := self.sock.recv(262144):
                self.bytes += len(data)
        except OSError:
            pass

    def close(self):
        self._reader.kill(block=False)
        self.sock.close()
