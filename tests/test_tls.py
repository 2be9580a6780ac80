"""TLS: certificates made at run time with trustme; server and clients as processes."""

import re
import signal
import sys

import pytest
import trustme
from gevent import subprocess

from chatroom.testing import WAIT, ClientProcess, assert_clean_log, eventually, rss_kb

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and localhost, and one for another host."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    for name, hosts in [("server", ["localhost", "127.0.0.1"]), ("elsewhere", ["chat.example.org"])]:
        cert = ca.issue_cert(*hosts)
        cert.private_key_pem.write_to_path(str(folder / f"{name}.key"))
        for i, pem in enumerate(cert.cert_chain_pems):
            pem.write_to_path(str(folder / f"{name}.pem"), append=i > 0)
    return folder


def tls_server(server_process, pki, name="server"):
    return server_process("--tls-cert", str(pki / f"{name}.pem"), "--tls-key", str(pki / f"{name}.key"))


def run_client(address, *args):
    host, port = address
    return subprocess.run(
        [sys.executable, "-m", "chatroom.client", *args, host, str(port)],
        input=b"login alice\nlist\n",
        capture_output=True,
        timeout=WAIT * 3,
    )


def test_two_tls_clients_chat(server_process, pki):
    server = tls_server(server_process, pki)
    assert "(TLS)" in server.log_text()
    alice = ClientProcess(server.address, "--tls", "--ca", str(pki / "ca.pem"))
    bob = ClientProcess(server.address, "--tls", "--ca", str(pki / "ca.pem"))
    try:
        assert alice.run("login alice") == ["Success"]
        assert bob.run("login bob") == ["Success"]
        assert alice.run("sendto bob over TLS") == ["Success"]
        assert bob.read_line() == "alice: over TLS"
        alice.send("list")
        assert alice.read_lines(2) == ["alice", "bob"]
    finally:
        alice.stop()
        bob.stop()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert_clean_log(server.log_text())


def test_host_name_is_verified(server_process, pki):
    server = tls_server(server_process, pki)
    result = run_client(("localhost", server.port), "--tls", "--ca", str(pki / "ca.pem"))
    assert result.returncode == 0 and result.stdout == b"Success\nalice\n"
    wrong_host = tls_server(server_process, pki, "elsewhere")
    result = run_client(wrong_host.address, "--tls", "--ca", str(pki / "ca.pem"))
    assert result.returncode == 1
    assert b"certificate" in result.stderr.lower() and len(result.stderr.splitlines()) == 1


def test_an_unknown_ca_is_refused(server_process, pki):
    server = tls_server(server_process, pki)
    result = run_client(server.address, "--tls")  # the system's CAs do not know ours
    assert result.returncode == 1
    assert b"certificate verify failed" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_plain_client_to_tls_server_is_a_clear_error(server_process, pki):
    server = tls_server(server_process, pki)
    result = run_client(server.address)
    assert result.returncode == 1
    assert b"try --tls" in result.stderr and len(result.stderr.splitlines()) == 1
    server.wait_for_log("TLS handshake with 127.0.0.1:")
    assert_clean_log(server.log_text())


def test_tls_client_to_plain_server_is_a_clear_error(server_process, pki):
    server = server_process()
    result = run_client(server.address, "--tls", "--ca", str(pki / "ca.pem"))
    assert result.returncode == 1
    assert b"is the server using TLS?" in result.stderr and len(result.stderr.splitlines()) == 1
    assert_clean_log(server.log_text())


def test_a_silent_connection_to_a_tls_server_does_not_hold_the_server(server_process, pki, peer_at):
    server = tls_server(server_process, pki)
    silent = peer_at(server.address)  # connects, never says hello
    result = run_client(server.address, "--tls", "--ca", str(pki / "ca.pem"))
    assert result.returncode == 0 and result.stdout == b"Success\nalice\n"
    silent.close()


def test_handshakes_count_against_max_clients_and_give_way_to_new_clients(server_process, pki, peer_at):
    server = server_process(
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"), "--max-clients", "3"
    )
    silent = [peer_at(server.address) for _ in range(3)]  # every place taken by a stalled handshake
    result = run_client(server.address, "--tls", "--ca", str(pki / "ca.pem"))
    assert result.returncode == 0 and result.stdout == b"Success\nalice\n"  # the oldest gave way
    silent[0].assert_closed()
    server.wait_for_log("1 max_clients")  # counted, and summed up in the log
    for peer in silent:
        peer.close()


def test_stalled_handshakes_cost_little_and_keep_no_client_out(server_process, pki, peer_at):
    server = server_process(
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"), "--max-handshakes", "100"
    )
    before = rss_kb(server.pid)
    silent = [peer_at(server.address) for _ in range(1500)]  # connect and say nothing
    half_hello = [peer_at(server.address) for _ in range(300)]  # start a ClientHello, stall
    for peer in half_hello:
        peer.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    # Every connection accepted: all but the last 100 handshakes were dropped for newer ones.
    stalled = len(silent) + len(half_hello)
    eventually(lambda: dropped_handshakes(server.log_text()) >= stalled - 100, timeout=WAIT * 2)
    result = run_client(server.address, "--tls", "--ca", str(pki / "ca.pem"))
    assert result.returncode == 0 and result.stdout == b"Success\nalice\n"
    grown = rss_kb(server.pid) - before
    assert grown < 25 * 1024, f"RSS grew by {grown} KiB for {stalled} stalled handshakes"
    assert server.log_text().count("refused or dropped") <= 10  # a summary a second, not a line each
    assert_clean_log(server.log_text())


def dropped_handshakes(log: str) -> int:
    """Handshakes dropped for newer ones, as the log's summaries count them."""
    return sum(int(count) for count in re.findall(r"(\d+) handshakes", log))


def test_the_irc_port_speaks_tls_with_the_servers_certificate(server_process, pki):
    import socket
    import ssl

    from chatroom.testing import IrcPeer, free_port

    port = free_port()
    server = server_process(
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"), "--irc", f"127.0.0.1:{port}"
    )
    server.wait_for_log(f"IRC on 127.0.0.1:{port}")
    client = IrcPeer(("127.0.0.1", port), tls=ssl.create_default_context(cafile=str(pki / "ca.pem")))
    try:
        assert client.register("alice")[0] == ":chatroom 001 alice :Welcome to chatroom, alice"
        client.send("PING :over tls")
        assert client.line() == ":chatroom PONG chatroom :over tls"
    finally:
        client.close()
    plain = socket.create_connection(("127.0.0.1", port), timeout=WAIT)  # plain text is not served
    try:
        plain.sendall(b"NICK bob\r\nUSER bob 0 * :bob\r\n")
        try:
            answered = plain.recv(4096)
        except ConnectionResetError:
            answered = b""  # (the handshake failed: the connection is let go)
        assert b" 001 " not in answered
    finally:
        plain.close()
    assert_clean_log(server.log_text())
