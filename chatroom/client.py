"""The terminal chat client: ``chatroom-client [HOST] [PORT]``.

On a terminal it runs an interactive prompt (:mod:`chatroom.terminal`); otherwise it reads
plain lines from stdin (:mod:`chatroom.shell`), for scripts and tests, with byte-for-byte the
same output.
"""

from gevent import monkey

# prompt_toolkit runs an asyncio loop and a writer thread; patched first, they become
# cooperative, so one OS thread serves the prompt and the network alike.
monkey.patch_all()

import argparse  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402

from .connection import ConnectionLost, connect, tls_context  # noqa: E402
from .shell import Client, run_plain  # noqa: E402

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatroom-client", description="Chat on a chatroom server.")
    parser.add_argument("host", nargs="?", default=DEFAULT_HOST, help="server address (default %(default)s)")
    parser.add_argument("port", nargs="?", type=int, default=DEFAULT_PORT, help="server port (default %(default)s)")
    parser.add_argument("--tls", action="store_true", help="connect over TLS, verifying the server's certificate")
    parser.add_argument("--ca", metavar="FILE", help="with --tls: trust the CA certificates in FILE (PEM)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.ca and not args.tls:
        build_parser().error("--ca goes with --tls")
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
    sys.stdout.reconfigure(errors="backslashreplace", line_buffering=True)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        from .terminal import run_terminal as run
    else:
        run = run_plain

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


if __name__ == "__main__":
    sys.exit(main())
