"""A raw IRC client for the IRC port's tests: send lines, read lines, with bounded waits."""

import ssl

from gevent import socket  # (cooperative: it may talk to a server in the same process)

from .waiting import WAIT


class IrcPeer:
    """A raw IRC client: send lines, read lines (bounded waits)."""

    def __init__(self, address, tls: ssl.SSLContext | None = None):
        self.sock = socket.create_connection(address, timeout=WAIT)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=address[0])
        self._buffer = b""

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def line(self) -> str:
        while b"\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            assert data, "connection closed while a line was expected"
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line.decode()

    def until(self, word: str) -> list[str]:
        """Lines up to and including the first with word as its command or numeric."""
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].split(" ")[1] == word:
                return lines

    def register(self, nick: str, password: str | None = None) -> list[str]:
        if password is not None:
            self.send(f"PASS {password}")
        self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        return self.until("422")

    def close(self):
        self.sock.close()
