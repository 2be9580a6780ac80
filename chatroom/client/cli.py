"""``chatroom-client [HOST] [PORT]``: connect, then run the prompt or the plain front end.

On a terminal it runs an interactive prompt (:mod:`.terminal`), which reconnects when the
connection drops; otherwise it reads plain lines from stdin (:mod:`.plain`), for scripts and
tests, with the seed's words byte for byte.
"""

import argparse
import io
import ipaddress
import os
import sys

from .. import __version__
from ..arguments import port_number
from ..protocol import DEFAULT_PORT

DEFAULT_HOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatroom-client", description="Chat on a chatroom server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "host", nargs="?", default=DEFAULT_HOST, help="server address (default %(default)s); a lone number is the port"
    )
    parser.add_argument("port", nargs="?", type=port_number(), help=f"server port (default {DEFAULT_PORT})")
    parser.add_argument("--tls", action="store_true", help="connect over TLS, verifying the server's certificate")
    parser.add_argument("--ca", metavar="FILE", help="with --tls: trust the CA certificates in FILE (PEM)")
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="the password of a registered name, for scripts (else $CHATROOM_PASSWORD; a terminal asks)",
    )
    terminal = parser.add_argument_group("on a terminal")
    terminal.add_argument(
        "--no-reconnect", action="store_true", help="exit (status 1) when the connection drops, instead of reconnecting"
    )
    terminal.add_argument(
        "--timestamps", action=argparse.BooleanOptionalAction, default=True, help="show the time of each message"
    )
    terminal.add_argument("--no-bell", action="store_true", help="no terminal bell when a message arrives")
    return parser


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.port is None:
        if args.host.isdigit():  # a lone number is the port
            try:
                args.host, args.port = DEFAULT_HOST, port_number()(args.host)
            except argparse.ArgumentTypeError as err:
                parser.error(str(err))
        else:
            args.port = DEFAULT_PORT
    if args.ca and not args.tls:
        parser.error("--ca goes with --tls")
    return args


def main(argv=None) -> int:
    args = parse_arguments(argv)

    # prompt_toolkit runs an asyncio loop and a writer thread; patched before they are
    # imported, they become cooperative, so one OS thread serves the prompt and the network.
    from gevent import monkey

    monkey.patch_all()
    import ssl

    from .connection import connect, tls_context

    try:
        tls = tls_context(args.ca) if args.tls else None
    except (OSError, ssl.SSLError) as err:
        reason = "not found" if isinstance(err, FileNotFoundError) else "no certificate in it"
        return _fail(f"cannot use the CA file {args.ca}: {reason}")
    try:
        given_password = read_password(args.password_file)
    except OSError as err:
        return _fail(f"cannot read the password file {args.password_file}: {err.strerror}")

    def open_socket():
        return connect(args.host, args.port, tls)

    address = f"{args.host}:{args.port}"
    if _interactive():
        print(f"connecting to {address}...", flush=True)
    try:
        sock = open_socket()
    except ssl.SSLError as err:
        verify_message = getattr(err, "verify_message", None)
        reason = f"certificate verify failed: {verify_message}" if verify_message else err.reason or str(err)
        hint = " (is the server using TLS?)" if err.reason == "WRONG_VERSION_NUMBER" else ""
        return _fail(f"TLS with {address} failed: {reason}{hint}")
    except OSError as err:
        return _fail(f"cannot connect to {address}: {err.strerror or err}")
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace", line_buffering=True)
    plaintext_warning = None
    if tls is None and not is_loopback(args.host):
        plaintext_warning = (
            f"the connection to {address} is not encrypted (no --tls): a password would cross the network in clear"
        )
    return _chat(args, address, sock, open_socket, given_password, plaintext_warning)


def _chat(args, address, sock, open_socket, given_password, plaintext_warning) -> int:
    """Run the front end that suits stdin over the connection sock; the exit status."""
    from .connection import ConnectionLost
    from .core import Client

    interactive = _interactive()
    if interactive:
        from .link import Link
        from .screen import TerminalOutput
        from .terminal import run_terminal

        output = TerminalOutput(timestamps=args.timestamps, bell=not args.no_bell)
        client = Client(output)
    else:
        from .plain import PlainOutput, run_plain

        client = Client(PlainOutput(lambda line: print(line, flush=True)))
    try:
        try:
            client.attach(sock, address)
        except ConnectionLost:
            if not interactive or args.no_reconnect:
                raise  # else the link says why, and keeps trying as for a lost connection
        if interactive:
            link = None if args.no_reconnect else Link(client, open_socket, output.notice, address)
            return run_terminal(client, output, address, link, plaintext_warning, given_password)
        return run_plain(client, given_password, plaintext_warning)
    except ConnectionLost:
        assert client.connection is not None
        return _fail(client.connection.lost_reason)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        from .plain import silence_stdout

        silence_stdout()
        return 0
    finally:
        if client.connection is not None:
            client.connection.close()


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _fail(reason: str) -> int:
    print(f"chatroom-client: {reason}", file=sys.stderr)
    return 1


def read_password(path: str | None) -> str | None:
    """The password given for scripts: the first line of path, else $CHATROOM_PASSWORD."""
    if path is not None:
        with open(path, encoding="utf-8") as lines:
            return lines.readline().rstrip("\r\n")
    return os.environ.get("CHATROOM_PASSWORD")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
