"""The chat server.

- :mod:`.cli`: ``chatroom-server``, the command line;
- :mod:`.chatserver`: :class:`ChatServer`, the listener that starts a session per client;
- :mod:`.session`: one client's connection, answering its frames;
- :mod:`.outbox`: a connection's outgoing queue;
- :mod:`.sockets`: socket options, TLS and ending connections;
- :mod:`.limits`: what one connection may take;
- :mod:`.directory`: who is logged in and where (in-process);
- :mod:`.cluster`: the same, shared through Redis by several servers.
"""

from .chatserver import ChatServer

__all__ = ["ChatServer"]
