"""Command-line value types that the server, the client and the bench share."""

import argparse


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
