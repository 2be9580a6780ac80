"""Addresses of the Redis servers a node is sent to: what is kept when only the host moves."""

from chatroom.server.presence.redis_link import _with_address


def test_another_host_keeps_the_scheme_credentials_and_database():
    assert (
        _with_address("rediss://user:secret@10.0.0.1:7000/0", "10.0.0.2", 7001)
        == "rediss://user:secret@10.0.0.2:7001/0"
    )
    assert _with_address("redis://127.0.0.1:6379/0?timeout=1", "10.0.0.3", 7002) == "redis://10.0.0.3:7002/0?timeout=1"


def test_an_ipv6_host_goes_in_brackets():
    assert _with_address("redis://[::1]:7000/0", "fd00::2", 7001) == "redis://[fd00::2]:7001/0"
