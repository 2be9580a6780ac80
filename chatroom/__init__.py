"""chatroom: a chat server and a terminal chat client over TCP.

Shared: protocol (message types and limits), codec (sans-I/O bytes <-> messages).
Server: directory and cluster (presence and routing, in-process or through Redis), limits,
outbox and session (one connection), server (the StreamServer and its command line).
Client: commands, display, connection, shell, terminal, client (the entry point).
Measuring: bench (chatroom-bench), local_redis (a redis-server for tests and benchmarks).
"""

__version__ = "0.1.0"
