"""How the server reaches Redis: one Redis server, or a Redis Cluster found from any of its nodes.

The directory keeps every key it needs in one hash slot (their names share the hash tag
``{chatroom}``), so that claims and batches stay single atomic scripts: it talks to the one
master that owns that slot, through plain clients, exactly as it talks to a single Redis.
The store's keys (accounts, offline messages, history) are spread over the slots and go
through a cluster client that routes each command to the master of its key.
"""

import functools
import select
from urllib.parse import urlsplit, urlunsplit

import redis
from gevent import monkey
from redis.backoff import NoBackoff
from redis.cluster import key_slot
from redis.connection import ConnectionInterface
from redis.retry import Retry

MINIMUM_VERSION = (7, 0)  # sharded pub/sub (SSUBSCRIBE, SPUBLISH) came with Redis 7
POOL_WAIT = 10.0  # seconds a request may wait for a pooled connection


class RedisTooOld(Exception):
    """The Redis at the given address lacks what the cluster needs."""


_kernel_poll = monkey.get_original("select", "poll")


class KernelCheckedConnection(redis.Connection):
    """redis-py's TCP connection, whose check for unread bytes (made before every command a
    pool hands it out for) asks the kernel itself when it may not wait.

    redis-py asks with ``select.poll``, which the server's gevent patches: even with no timeout,
    gevent's poll starts a watcher and waits a turn of the hub's loop, every other greenlet
    running meanwhile (about 40 us of a node's CPU a command: a cross-node message took 195
    us of each node's, 157 without). Nothing to read, the usual answer, is the kernel's to
    give; anything else (a closed socket, a stray reply) goes to redis-py's own check. Bytes
    of a reply left in the parser cannot hide from the kernel's answer: redis-py drops a
    connection whose read was cut short."""

    def can_read(self, timeout: float = 0) -> bool:
        sock = self._sock
        if timeout == 0 and sock is not None:
            poller = _kernel_poll()
            poller.register(sock, select.POLLIN)
            if not poller.poll(0):
                return False
        return super().can_read(timeout)


def run_script(connection: ConnectionInterface, script, keys: list, args: list):
    """A registered script (redis-py's Script) run on one connection itself, past a client's
    pool, retries and hooks (for a cross-node message's batch: 0.8-0.9x of each node's CPU a
    message); loaded first where Redis lacks it (NOSCRIPT: a Redis restarted). It
    raises what the client would; a connection whose command failed is dropped, and connects
    again for the next."""
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    connection.send_command(*command)
    try:
        return connection.read_response()
    except redis.exceptions.NoScriptError:
        connection.send_command("SCRIPT", "LOAD", script.script)
        connection.read_response()
        connection.send_command(*command)
        return connection.read_response()


def redis_client(url: str, **settings) -> redis.Redis:
    """A client of one Redis server (its own pool), with settings as redis-py takes them."""
    return redis.Redis.from_url(url, **_connection_class(url), **settings)


def pooled_client(url: str, connections: int) -> redis.Redis:
    """A client of one Redis server for many greenlets at once: they share a few connections,
    waiting their turn (cooperatively: the server patches sockets and locks for redis-py)."""
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=connections, **_pool_settings(url))
    return redis.Redis(connection_pool=pool)


def store_client(url: str, connections: int) -> redis.Redis | redis.RedisCluster:
    """A pooled client for keys in any slot: a cluster client if url is a node of a Redis
    Cluster (with at most ``connections`` per master), else pooled_client(url). Raises
    RedisTooOld for a Redis without sharded pub/sub."""
    info = _server_info(url)
    version = tuple(int(part) for part in str(info["redis_version"]).split(".")[:2])
    if version < MINIMUM_VERSION:
        raise RedisTooOld(f"it is Redis {info['redis_version']}; cluster mode needs Redis 7.0 or newer")
    if not info.get("cluster_enabled"):
        return pooled_client(url, connections)
    settings = _pool_settings(url)
    pool_class = functools.partial(redis.BlockingConnectionPool, timeout=settings.pop("timeout"))
    return redis.RedisCluster.from_url(url, connection_pool_class=pool_class, max_connections=connections, **settings)


def some_node(client: redis.Redis | redis.RedisCluster, url: str) -> str:
    """The address of a node to subscribe at: url for a single Redis; for a Redis Cluster,
    any node the cluster client knows of now (a classic PUBLISH reaches every node)."""
    if not isinstance(client, redis.RedisCluster):
        return url
    node = client.get_random_node()
    return _with_address(url, node.host, node.port)


def forget_topology(client: redis.Redis | redis.RedisCluster) -> None:
    """After a pipeline failed: make a cluster client ask the cluster where the slots are now.
    (A single command does so by itself when its node cannot be reached; redis-py's cluster
    pipeline does not, and would go on sending to a master that is gone.)"""
    if isinstance(client, redis.RedisCluster):
        try:
            client.nodes_manager.initialize()
        except redis.RedisError:
            pass  # nobody answers now: the next failure asks again


def slot_owner(candidates: list[str], key: str) -> tuple[str, list[str]]:
    """Where key is held, asking the Redis servers at candidates in turn: (the address of
    the one holding it, every address the first to answer knows of). For a single Redis,
    that is its own address; for a Redis Cluster, the master that owns key's slot, and
    every node of the cluster (somewhere to ask again should this one fail)."""
    error: redis.RedisError = redis.ConnectionError("no Redis address")
    for url in candidates:
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0) as probe:
                if not probe.info("cluster").get("cluster_enabled"):
                    return url, [url]
                slots = probe.execute_command("CLUSTER SLOTS")
        except redis.RedisError as err:
            error = err
            continue
        slot = key_slot(key.encode())
        nodes = [_with_address(url, _text(node[0]), node[1]) for _, _, *served_by in slots for node in served_by]
        for first, last, master, *_ in slots:
            if first <= slot <= last:
                return _with_address(url, _text(master[0]), master[1]), list(dict.fromkeys(nodes))
        error = redis.ConnectionError(f"no master of the Redis Cluster at {url} serves slot {slot}")
    raise error


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _server_info(url: str) -> dict:
    with redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0) as probe:
        return probe.info()


def _with_address(url: str, host: str, port: int) -> str:
    """url with another host and port (its scheme, credentials and options kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 in brackets
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _connection_class(url: str) -> dict:
    """KernelCheckedConnection for a plain TCP address (redis://); redis-py's own for TLS,
    whose decrypted bytes wait above the kernel, and for a Unix socket."""
    return {"connection_class": KernelCheckedConnection} if urlsplit(url).scheme == "redis" else {}


def _pool_settings(url: str) -> dict:
    # A request waits at most 2 s for an answer, and is retried once. Its turn at a pooled
    # connection may take longer: in a storm of logins and joins (1,000 members joining one
    # room at once) every connection stays busy for seconds while the hub hands the events
    # out, and Redis is fine meanwhile: a refusal then would be wrong.
    settings = {"timeout": POOL_WAIT, "socket_connect_timeout": 1.0, "socket_timeout": 2.0}
    return {**settings, "retry": Retry(NoBackoff(), 1), **_connection_class(url)}
