"""Presence and routing shared through Redis, so that several servers act as one chat.

- :mod:`.directory`: :class:`RedisDirectory`, names and presence (claims, heartbeats, epochs,
  following the directory's slot in a Redis Cluster);
- :mod:`.courier`: messages to other nodes in batches, settling lost replies, the circuit
  breaker;
- :mod:`.inbox`: the batches other nodes send to this one;
- :mod:`.scripts`: the keys, the Lua scripts with their wrappers, the cross-node envelope.
"""

from .directory import RedisDirectory

__all__ = ["RedisDirectory"]
