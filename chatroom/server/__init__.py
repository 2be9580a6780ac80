"""The chat server.

- :mod:`.cli`: ``chatroom-server``, the command line, signals and systemd; :mod:`.config`
  (TOML settings), :mod:`.logs` (text or JSON lines), :mod:`.metrics` (/metrics, /health);
- :mod:`.chatserver`: :class:`ChatServer`, the listeners, a session per client;
- :mod:`.session`: one client's connection, answering its frames; :mod:`.extension`: the
  answers to the extension's requests (accounts, history);
- :mod:`.outbox`: a connection's outgoing queue; :mod:`.sockets`: socket options, TLS,
  ending connections; :mod:`.web`: the browser's page and WebSocket;
- :mod:`.limits`: what one connection may take;
- :mod:`.directory`: who is logged in and where (in-process); :mod:`.cluster`: the same,
  shared through Redis by several servers; :mod:`.skeleton`: look-alike names;
- :mod:`.identity`: accounts and passwords over a :mod:`.store`: :mod:`.sqlite_store`
  (default) or :mod:`.redis_store` (cluster).
"""

from .connection.chatserver import ChatServer

__all__ = ["ChatServer"]
