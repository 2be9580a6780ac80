"""Command-line value types that the server, the client and the bench share, and options
made from the fields of a settings dataclass (the server's limits and quotas)."""

import argparse
from dataclasses import fields


def port_number(lowest: int = 1):
    """An argparse type: a TCP port from lowest (0: any free one, for a server) to 65535."""

    def parse(text: str) -> int:
        try:
            port = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
        if not lowest <= port <= 65535:
            raise argparse.ArgumentTypeError(f"port {port} is out of range ({lowest}-65535)")
        return port

    return parse


def add_dataclass_arguments(group, settings, options: dict) -> None:
    """A --option for each field of the dataclass ``settings``; options[field] is its (type,
    metavar, help); a bool field is a flag."""
    for field in fields(settings):
        kind, metavar, help_text = options[field.name]
        flag = "--" + field.name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, action="store_true", default=field.default, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=field.default, metavar=metavar, help=help_text)


def dataclass_from_arguments(settings, args):
    """An instance of the dataclass ``settings`` from parsed arguments of the same names."""
    return settings(**{field.name: getattr(args, field.name) for field in fields(settings)})
