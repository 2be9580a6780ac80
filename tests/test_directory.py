"""The in-process directory and the limits' command-line options, without a network."""

import argparse

import pytest

from chatroom.server.connection.limits import Limits, add_arguments, from_arguments
from chatroom.server.presence.directory import LocalDirectory


class Box:
    """A mailbox stand-in: the directory only keeps it and hands it back."""


def test_a_name_is_claimed_once_and_found():
    directory = LocalDirectory()
    alice, other = Box(), Box()
    assert directory.claim("alice", alice)
    assert not directory.claim("alice", other)
    assert directory.find("alice") is alice
    assert directory.find("bob") is None


def test_release_only_by_the_holder():
    directory = LocalDirectory()
    alice, impostor = Box(), Box()
    directory.claim("alice", alice)
    directory.release("alice", impostor)
    assert directory.find("alice") is alice
    directory.release("alice", alice)
    assert directory.find("alice") is None
    assert directory.claim("alice", impostor)


def test_names_are_sorted_by_code_point():
    directory = LocalDirectory()
    for name in ["bob", "Zed", "alice", "Émile", "_x"]:
        directory.claim(name, Box())
    assert directory.names() == ["Zed", "_x", "alice", "bob", "Émile"]


def test_stop_forgets_everyone():
    directory = LocalDirectory()
    directory.start()
    directory.claim("alice", Box())
    directory.stop()
    assert directory.names() == [] and directory.find("alice") is None


def parse_limits(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(argv))


def test_limit_defaults_come_from_the_dataclass():
    assert parse_limits() == Limits()


def test_every_limit_has_an_option():
    limits = parse_limits(
        "--sendq", "4096", "--send-timeout", "2.5", "--frame-timeout", "9", "--rate-limit", "20", "--max-clients", "7"
    )
    assert limits == Limits(sendq=4096, send_timeout=2.5, frame_timeout=9.0, rate_limit=20.0, max_clients=7)


def test_a_limit_of_the_wrong_type_is_refused():
    with pytest.raises(SystemExit):
        parse_limits("--sendq", "lots")
