"""SASL PLAIN for :class:`~.client.IrcClient` (IRCv3 sasl-3.1): AUTHENTICATE logs a registered
name in with its password before registration ends. The credentials come Base64 in chunks of
400 bytes (a chunk of exactly 400 says more follows; ``+`` ends them); ``*`` gives up.

A mixin: the IrcClient holds the state (the exchange under way, the account logged in) and
the numerics.
"""

import base64
from typing import TYPE_CHECKING

from ...protocol import Authenticate, Status
from .lines import encode_line
from .nicks import source_of_nick, to_nick
from .translate import irc_frame

SASL_CHUNK = 400  # bytes of an AUTHENTICATE's data: a chunk of exactly these says more follows
MOST_SASL_CHUNKS = 4  # a PLAIN response's at most: its names and a password of MAX_PASSWORD_BYTES fit in two


class SaslCommands:
    if TYPE_CHECKING:  # what IrcClient holds and does
        from ...protocol import Response

        caps: set[str]
        registered: bool
        _account: str | None
        _sasl_started: bool
        _sasl_chunks: list[str]

        def _numeric(self, numeric: str, *params: str) -> bytes: ...

        def _line(self, numeric: str, *params: str) -> bytes: ...

        def _log_in(self, request) -> Response: ...

    def _authenticate(self, params) -> bytes:
        """SASL PLAIN (IRCv3 sasl): a registered name logged in with its password before
        registration ends."""
        if "sasl" not in self.caps or self.registered or self._account is not None:
            return self._numeric("907" if self._account else "904", ":SASL authentication failed")
        if not params:
            return self._numeric("461", "AUTHENTICATE", ":Not enough parameters")
        if params[0] == "*":  # (the client gives up: IRCv3 sasl)
            self._sasl_reset()
            return self._numeric("906", ":SASL authentication aborted")
        if not self._sasl_started:
            if params[0].upper() != "PLAIN":
                return self._numeric("908", "PLAIN", ":are available SASL mechanisms") + self._sasl_failed()
            self._sasl_started = True
            return irc_frame(encode_line("AUTHENTICATE", "+"))
        chunk = params[0]
        if len(chunk) > SASL_CHUNK or len(self._sasl_chunks) == MOST_SASL_CHUNKS:
            self._sasl_reset()
            return self._numeric("905", ":SASL message too long")
        if chunk != "+":
            self._sasl_chunks.append(chunk)
            if len(chunk) == SASL_CHUNK:
                return b""  # (more to come: the next chunk, or "+" if none)
        response = "".join(self._sasl_chunks)
        self._sasl_reset()  # (the exchange is over either way: a retry begins anew)
        try:
            _authzid, account, password = base64.b64decode(response, validate=True).decode().split("\0")
        except (ValueError, UnicodeDecodeError):
            return self._sasl_failed()
        answer = self._log_in(Authenticate(account, password))
        if answer.status is not Status.OK:
            return self._sasl_failed()
        self._account = account
        lines = [
            self._line("900", source_of_nick(to_nick(account)), account, f"You are now logged in as {account}"),
            self._line("903", "SASL authentication successful"),
        ]
        return irc_frame(b"".join(lines))

    def _sasl_failed(self) -> bytes:
        self._sasl_reset()
        return self._numeric("904", ":SASL authentication failed")

    def _sasl_reset(self) -> None:
        self._sasl_started = False
        self._sasl_chunks = []
