"""chatroom: a chat server and a terminal chat client over TCP.

Modules: protocol (message types and limits), codec (sans-I/O bytes <-> messages),
directory (presence and routing), outbox and session (one connection on the server),
server (the StreamServer and its command line), client (the terminal client).
"""

__version__ = "0.1.0"
