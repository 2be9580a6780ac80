"""chatroom: a chat server and a terminal chat client over TCP.

- :mod:`chatroom.protocol` and :mod:`chatroom.codec`: the wire protocol both sides speak
  (messages and limits; bytes to messages and back, without I/O);
- :mod:`chatroom.server`: the server (``chatroom-server``);
- :mod:`chatroom.client`: the terminal client (``chatroom-client``);
- :mod:`chatroom.bench`: a load generator for any chatroom server (``chatroom-bench``);
- :mod:`chatroom.testing`: server, redis-server and raw-protocol helpers for tests and
  benchmarks.
"""

__version__ = "0.2.0"
