"""How the server reaches Redis: one Redis server, or a Redis Cluster found from any of its nodes.

The directory keeps every key it needs in one hash slot (their names share the hash tag
``{chatroom}``), so that claims and batches stay single atomic scripts: it talks to the one
master that owns that slot, through plain clients, exactly as it talks to a single Redis.
The store's keys (accounts, offline messages, history) are spread over the slots and go
through a cluster client that routes each command to the master of its key.
"""

import functools
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import key_slot
from redis.retry import Retry

MINIMUM_VERSION = (7, 0)  # sharded pub/sub (SSUBSCRIBE, SPUBLISH) came with Redis 7


class RedisTooOld(Exception):
    """The Redis at the given address lacks what the cluster needs."""


def pooled_client(url: str, connections: int) -> redis.Redis:
    """A client of one Redis server for many greenlets at once: they share a few connections,
    waiting their turn (cooperatively: the server patches sockets and locks for redis-py)."""
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=connections, **_pool_settings())
    return redis.Redis(connection_pool=pool)


def store_client(url: str, connections: int) -> redis.Redis | redis.RedisCluster:
    """A pooled client for keys in any slot: a cluster client if url is a node of a Redis
    Cluster (with at most ``connections`` per master), else pooled_client(url). Raises
    RedisTooOld for a Redis without sharded pub/sub."""
    info = _server_info(url)
    version = tuple(int(part) for part in str(info["redis_version"]).split(".")[:2])
    if version < MINIMUM_VERSION:
        raise RedisTooOld(f"Redis {info['redis_version']} at {url}; cluster mode needs Redis 7.0 or newer")
    if not info.get("cluster_enabled"):
        return pooled_client(url, connections)
    settings = _pool_settings()
    pool_class = functools.partial(redis.BlockingConnectionPool, timeout=settings.pop("timeout"))
    return redis.RedisCluster.from_url(url, connection_pool_class=pool_class, max_connections=connections, **settings)


def slot_owner(url: str, key: str) -> str:
    """The address of the Redis server that holds key: url itself for a single Redis, or the
    master owning key's slot when url is a node of a Redis Cluster."""
    with redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0) as probe:
        if not probe.info("cluster").get("cluster_enabled"):
            return url
        slot = key_slot(key.encode())
        for start, end, master, *_ in probe.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                host, port = master[0], master[1]
                return _with_address(url, host.decode() if isinstance(host, bytes) else host, port)
    raise redis.ConnectionError(f"no master of the Redis Cluster at {url} serves slot {slot}")


def _server_info(url: str) -> dict:
    with redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0) as probe:
        return probe.info()


def _with_address(url: str, host: str, port: int) -> str:
    """url with another host and port (its scheme, credentials and options kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _pool_settings() -> dict:
    # A request waits at most 2 s for a connection or an answer, and is retried once.
    return {"timeout": 2.0, "socket_connect_timeout": 1.0, "socket_timeout": 2.0, "retry": Retry(NoBackoff(), 1)}
