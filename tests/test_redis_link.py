"""Addresses of the Redis servers a node is sent to (what is kept when only the host moves), and
the pool a node shares its connections to Redis through."""

import select
import threading
import time

import gevent
import gevent.select
import pytest
import redis

from chatroom.server.presence.redis_link import (
    POOL_WAIT,
    KernelCheckedConnection,
    _with_address,
    pooled_client,
    run_script,
)
from chatroom.testing import RedisProcess, eventually


def test_another_host_keeps_the_scheme_credentials_and_database():
    assert (
        _with_address("rediss://user:secret@10.0.0.1:7000/0", "10.0.0.2", 7001)
        == "rediss://user:secret@10.0.0.2:7001/0"
    )
    assert _with_address("redis://127.0.0.1:6379/0?timeout=1", "10.0.0.3", 7002) == "redis://10.0.0.3:7002/0?timeout=1"


def test_an_ipv6_host_goes_in_brackets():
    assert _with_address("redis://[::1]:7000/0", "fd00::2", 7001) == "redis://[fd00::2]:7001/0"


@pytest.mark.process
def test_a_request_waits_its_turn_at_a_busy_pool_longer_than_an_answer_may_take(tmp_path):
    """Every pooled connection busy for longer than Redis may take to answer (a storm of joins)
    is a wait, not a failure: Redis is fine meanwhile."""
    server = RedisProcess(tmp_path)
    try:
        client = pooled_client(server.url, connections=1)
        held = client.connection_pool.get_connection()
        hold_for = 3.0  # (longer than socket_timeout, the most an answer may take)
        releaser = threading.Timer(hold_for, client.connection_pool.release, [held])
        started = time.monotonic()  # (before the timer starts: it fires hold_for after that)
        releaser.start()
        assert client.ping() is True
        assert hold_for <= time.monotonic() - started < POOL_WAIT
        releaser.join()
    finally:
        server.close()


@pytest.mark.process
def test_the_check_before_a_pooled_command_asks_the_kernel_not_the_hub(tmp_path, monkeypatch):
    """redis-py checks a connection for unread bytes before every command a pool hands it out
    for. Under the server's gevent, its poll waited a turn of the hub's loop (every other
    greenlet ran meanwhile); the kernel answers at once, and what it cannot settle (a stray
    reply, a closed socket) redis-py's own check still does."""
    monkeypatch.setattr(select, "poll", gevent.select.poll)  # as the server's monkey-patching has it
    server = RedisProcess(tmp_path)
    try:
        connection = KernelCheckedConnection(port=server.port)
        connection.connect()
        others_ran = []
        gevent.spawn(others_ran.append, "a turn of the hub")
        assert connection.can_read() is False
        assert others_ran == []  # (a plain redis.Connection lets the greenlet run here)

        connection.send_command("PING")  # a reply nobody has read yet
        eventually(connection.can_read, what="the unread reply")
        assert connection.read_response() in (b"PONG", "PONG")

        connection.send_command("CLIENT", "ID")
        redis.Redis(port=server.port).client_kill_filter(_id=connection.read_response())
        with pytest.raises(redis.ConnectionError):
            eventually(connection.can_read, what="the closed connection")
    finally:
        server.close()


@pytest.mark.process
def test_a_script_runs_on_a_connection_of_its_own_and_is_loaded_where_redis_lacks_it(tmp_path):
    """(The courier's batches: Redis restarted without persistence has no scripts.)"""
    server = RedisProcess(tmp_path)
    try:
        client = redis.Redis(port=server.port)
        script = client.register_script("return {KEYS[1], ARGV[1] + 1}")
        connection = client.connection_pool.make_connection()
        assert run_script(connection, script, ["key"], [41]) == [b"key", 42]  # (never loaded before)
        client.script_flush()
        assert run_script(connection, script, ["again"], [1]) == [b"again", 2]
        with pytest.raises(redis.ResponseError):
            run_script(connection, client.register_script("return redis.call('NO-SUCH-COMMAND')"), [], [])
        assert run_script(connection, script, ["after an error"], [0]) == [b"after an error", 1]
    finally:
        server.close()
