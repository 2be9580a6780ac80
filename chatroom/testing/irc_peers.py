"""A raw IRC client for the IRC port's tests: send lines, read lines, with bounded waits."""

import base64
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

    def log_in_by_sasl(self, name: str, password: str) -> None:
        """SASL PLAIN as a client does it, up to its success (903), leaving registration
        unended: the client's CAP END is the caller's."""
        self.send("CAP LS 302", "CAP REQ :sasl", f"NICK {name}", f"USER {name} 0 * :{name}", "AUTHENTICATE PLAIN")
        assert [self.line().split(" ")[3] for _ in range(2)] == ["LS", "ACK"]
        assert self.line() == "AUTHENTICATE :+"
        self.send("AUTHENTICATE " + base64.b64encode(f"\0{name}\0{password}".encode()).decode())
        self.until("903")

    def close(self):
        self.sock.close()
