"""``chatroom-client [HOST] [PORT]``: connect, then run the prompt or the plain front end.

On a terminal it runs an interactive prompt (:mod:`.terminal`); otherwise it reads plain
lines from stdin (:mod:`.plain`), for scripts and tests, with byte-for-byte the same output.
"""

import argparse
import io
import sys

from .. import __version__
from ..protocol import DEFAULT_PORT

DEFAULT_HOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatroom-client", description="Chat on a chatroom server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("host", nargs="?", default=DEFAULT_HOST, help="server address (default %(default)s)")
    parser.add_argument("port", nargs="?", type=int, default=DEFAULT_PORT, help="server port (default %(default)s)")
    parser.add_argument("--tls", action="store_true", help="connect over TLS, verifying the server's certificate")
    parser.add_argument("--ca", metavar="FILE", help="with --tls: trust the CA certificates in FILE (PEM)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ca and not args.tls:
        parser.error("--ca goes with --tls")

    # prompt_toolkit runs an asyncio loop and a writer thread; patched before they are
    # imported, they become cooperative, so one OS thread serves the prompt and the network.
    from gevent import monkey

    monkey.patch_all()
    import ssl

    from .connection import ConnectionLost, connect, tls_context
    from .core import Client

    try:
        tls = tls_context(args.ca) if args.tls else None
        sock = connect(args.host, args.port, tls)
    except ssl.SSLError as err:
        verify_message = getattr(err, "verify_message", None)
        reason = f"certificate verify failed: {verify_message}" if verify_message else err.reason or str(err)
        hint = " (is the server using TLS?)" if err.reason == "WRONG_VERSION_NUMBER" else ""
        print(f"chatroom-client: TLS with {args.host}:{args.port} failed: {reason}{hint}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"chatroom-client: cannot connect to {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 1
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace", line_buffering=True)
    if sys.stdin.isatty() and sys.stdout.isatty():
        from .terminal import run_terminal as run
    else:
        from .plain import run_plain as run

    def write(line):
        print(line, flush=True)

    client = Client(sock, write)
    try:
        return run(client)
    except ConnectionLost:
        print(f"chatroom-client: {client.connection.lost_reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.connection.close()
