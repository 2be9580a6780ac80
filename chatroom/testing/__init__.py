"""Helpers for tests and benchmarks, by what they are for:

- :mod:`.waiting`: WAIT, the bound on any wait, :func:`eventually`, :func:`free_port`;
- :mod:`.peers`: :class:`Peer`, a raw protocol client; :func:`fake_server`, a stand-in server;
  :func:`kernel_socket_pair`, a connection's two ends for a server's stream;
- :mod:`.irc_peers`: :class:`IrcPeer`, a raw IRC client;
- :mod:`.fuzz`: random and broken frames;
- :mod:`.processes`: chatroom-server and chatroom-client as processes; :func:`assert_clean_log`;
- :mod:`.redis_servers`: throwaway redis-server processes, alone or as a Redis Cluster;
- :mod:`.measures`: a process's memory and CPU time;
- :mod:`.docs`: the generated part of a document in docs/.
"""

from .fuzz import random_frames, random_websocket_frames
from .irc_peers import IrcPeer
from .measures import cpu_seconds, rss_kb
from .peers import (
    FAILURE,
    FAILURE_BYTES,
    MALFORMED,
    MALFORMED_BYTES,
    OK,
    OK_BYTES,
    Peer,
    extended,
    failure,
    fake_server,
    greet_as_old_server,
    hello_peer,
    kernel_socket_pair,
    logged_in,
)
from .processes import SERVER_COMMAND, ClientProcess, ServerProcess, assert_clean_log
from .redis_servers import RedisClusterProcess, RedisProcess, redis_server_binary
from .waiting import WAIT, eventually, free_port

__all__ = [
    "FAILURE",
    "FAILURE_BYTES",
    "IrcPeer",
    "MALFORMED",
    "MALFORMED_BYTES",
    "OK",
    "OK_BYTES",
    "WAIT",
    "ClientProcess",
    "Peer",
    "RedisClusterProcess",
    "RedisProcess",
    "ServerProcess",
    "assert_clean_log",
    "cpu_seconds",
    "eventually",
    "extended",
    "hello_peer",
    "kernel_socket_pair",
    "failure",
    "fake_server",
    "free_port",
    "greet_as_old_server",
    "logged_in",
    "random_frames",
    "random_websocket_frames",
    "redis_server_binary",
    "SERVER_COMMAND",
    "rss_kb",
]
