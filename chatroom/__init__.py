"""chatroom: a chat server, a terminal chat client, and a browser client.

- :mod:`chatroom.protocol` and :mod:`chatroom.codec`: the wire protocol both sides speak
  (messages and limits; bytes to messages and back, without I/O); :mod:`chatroom.websocket`:
  the same over WebSocket, one frame per message, as a client speaks it;
- :mod:`chatroom.server`: the server (``chatroom-server``);
- :mod:`chatroom.client`: the terminal client (``chatroom-client``); :mod:`chatroom.web`: the
  browser client's files;
- :mod:`chatroom.arguments`: command-line value types the programs share;
- :mod:`chatroom.bench`: a load generator for any chatroom server (``chatroom-bench``);
- :mod:`chatroom.testing`: server, redis-server and raw-protocol helpers for tests and
  benchmarks.
"""

__version__ = "0.2.0"
