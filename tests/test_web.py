"""The browser client: a real headless chromium (Debian's, driven by its chromedriver through
Selenium, offline) against a real server process, beside raw-protocol clients."""

import os
import random
from pathlib import Path

import gevent
import pytest
from gevent import socket
from gevent.pool import Pool
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, RejectConnection, Request

from chatroom.codec import Decoder, encode
from chatroom.protocol import Incoming, ListUsers, Login, SendTo, UserList
from chatroom.testing import OK, WAIT, Peer, assert_clean_log, eventually, free_port, random_websocket_frames
from chatroom.websocket_client import binary_frame
from tests.browsers import click, log_in, until

pytestmark = pytest.mark.process

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_a_browser_and_a_terminal_protocol_client_chat(web_server, browser, logged_in, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    bob = logged_in(web_server.address, "bob")
    log_in(browser, web_server.web_url, "webby")
    assert bob.request(ListUsers()) == UserList(("bob", "webby"))
    # A message from the TCP client: an unread count, then the conversation. (Presence tells a
    # page only of those it shares a conversation or a room with: bob, from his first message.)
    assert bob.request(SendTo("webby", "hi from tcp")) == OK
    until(browser, lambda d: d.find_element(By.CSS_SELECTOR, '.user[data-name="bob"] .unread').text == "1", "unread")
    click(browser, '.user[data-name="bob"]')
    until(browser, lambda d: "hi from tcp" in d.find_element(By.ID, "messages").text, "the message")
    # And back: Enter sends, Shift+Enter makes a second line.
    text = browser.find_element(By.ID, "text")
    text.send_keys("hi from the web", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "second line", Keys.ENTER)
    with gevent.Timeout(WAIT):
        assert bob.next_event() == Incoming("webby", "hi from the web\nsecond line")
    until(browser, lambda d: "second line" in d.find_element(By.ID, "messages").text, "the echo")
    times = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#messages time")]
    assert len(times) == 2 and all(len(t) == 5 and t[2] == ":" for t in times)
    # The screenshot in docs/ is taken again with CHATROOM_UPDATE_DOCS=1, so that a test run
    # leaves the tree as it found it.
    shot = DOCS / "web-client.png" if os.environ.get("CHATROOM_UPDATE_DOCS") else tmp_path / "web-client.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_names_and_messages_are_shown_as_text_never_as_html(web_server, browser, logged_in):
    from selenium.webdriver.common.by import By

    log_in(browser, web_server.web_url, "webby")
    mallory = logged_in(web_server.address, "<b>mal</b>")
    attack = "<img src=x onerror=\"document.title='pwned'\">"
    assert mallory.request(SendTo("webby", attack)) == OK
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".user"), "mallory, pushed")
    click(browser, ".user")
    until(browser, lambda d: attack in d.find_element(By.ID, "messages").text, "the message, as text")
    # (Read through until: the list is redrawn as presence comes, the element found may go.)
    until(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".user .name").text == "<b>mal</b>", "the name, as text")
    assert not browser.find_elements(By.CSS_SELECTOR, "#messages img, #users b")
    assert browser.title == "chatroom"


def test_the_browser_reconnects_and_logs_in_again(server_process, browser, tmp_path, peer_at):
    from selenium.webdriver.common.by import By

    port, web_port = free_port(), free_port()
    args = ("--port", str(port), "--web", f"127.0.0.1:{web_port}")
    first = server_process(*args, data_dir=tmp_path)
    log_in(browser, f"http://127.0.0.1:{web_port}/", "webby")
    first.terminate()
    until(browser, lambda d: "reconnecting in" in d.find_element(By.ID, "status").text, "the disconnection")
    second = server_process(*args, data_dir=tmp_path)
    peer = peer_at(second.address)
    eventually(lambda: peer.request(ListUsers()) == UserList(("webby",)), timeout=WAIT * 4, interval=0.2)


# --- The WebSocket endpoint, without a browser ----------------------------------------------------


def handshake(address, origin):
    sock = socket.create_connection(address, timeout=WAIT)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(
        ws.send(Request(host=f"{address[0]}:{address[1]}", target="/chat", extra_headers=[("Origin", origin)]))
    )
    with gevent.Timeout(WAIT):
        while True:
            ws.receive_data(sock.recv(65536))
            for event in ws.events():
                if isinstance(event, (AcceptConnection, RejectConnection)):
                    return sock, ws, event


def test_other_origins_are_refused(web_server):
    sock, _, answer = handshake(web_server.web_address, "https://evil.example")
    sock.close()
    assert isinstance(answer, RejectConnection) and answer.status_code == 403


def test_one_frame_per_message_over_the_websocket(web_server, logged_in):
    host, port = web_server.web_address
    sock, ws, answer = handshake(web_server.web_address, f"http://{host}:{port}")
    try:
        assert isinstance(answer, AcceptConnection)
        sock.sendall(ws.send(BytesMessage(data=encode(Login("wsuser")))))
        decoder = Decoder.for_client()
        with gevent.Timeout(WAIT):
            ws.receive_data(sock.recv(65536))
            (event,) = list(ws.events())
        assert decoder.receive_data(event.data) == [OK]
        # Two frames in one message break the rule: the server closes (policy violation).
        sock.sendall(ws.send(BytesMessage(data=encode(ListUsers()) * 2)))
        with gevent.Timeout(WAIT):
            closed = None
            while closed is None:
                ws.receive_data(sock.recv(65536))
                closed = next((e for e in ws.events() if isinstance(e, CloseConnection)), None)
        assert closed.code == 1008
    finally:
        sock.close()


def test_the_page_is_served_with_a_strict_policy(web_server):
    import urllib.request

    with urllib.request.urlopen(web_server.web_url, timeout=WAIT) as response:
        page = response.read().decode()
        assert "Content-Security-Policy" in response.headers and '<script type="module" src="app.js"' in page


def test_a_message_longer_than_a_frame_closes_the_websocket(web_server):
    host, port = web_server.web_address
    sock, ws, answer = handshake(web_server.web_address, f"http://{host}:{port}")
    try:
        assert isinstance(answer, AcceptConnection)
        try:
            sock.sendall(ws.send(BytesMessage(data=b"\x03" + bytes(300_000))))
        except OSError:
            pass  # the server may close while the rest is still going out
        with gevent.Timeout(WAIT):
            closed = None
            while closed is None:
                data = sock.recv(65536)
                if not data:
                    break
                ws.receive_data(data)
                closed = next((e for e in ws.events() if isinstance(e, CloseConnection)), None)
        assert closed is not None and closed.code == 1009
        assert_clean_log(web_server.log_text())
    finally:
        sock.close()


def test_the_page_over_tls(server_process, tmp_path):
    import ssl
    import urllib.request

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    port = free_port()
    server = server_process(
        "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"), "--web", f"127.0.0.1:{port}"
    )
    server.wait_for_log(f"Web client on https://127.0.0.1:{port}/")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/protocol.js", timeout=WAIT, context=context) as response:
        assert response.status == 200 and b"WebSocket" in response.read()


def test_what_is_not_http_gets_a_plain_refusal(web_server):
    with socket.create_connection(web_server.web_address, timeout=WAIT) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        with gevent.Timeout(WAIT):
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 404 ")
    assert_clean_log(web_server.log_text())


def test_a_websocket_client_that_vanishes_without_a_close_frame_is_logged_out(web_server, logged_in):
    host, port = web_server.web_address
    watcher = logged_in(web_server.address, "watcher")
    for vanishing in ("gone1", "gone2"):
        sock, ws, answer = handshake(web_server.web_address, f"http://{host}:{port}")
        assert isinstance(answer, AcceptConnection)
        sock.sendall(ws.send(BytesMessage(data=encode(Login(vanishing)))))
        with gevent.Timeout(WAIT):
            ws.receive_data(sock.recv(65536))
        assert [Decoder.for_client().receive_data(event.data) for event in ws.events()] == [[OK]]
        assert watcher.request(ListUsers()) == UserList(tuple(sorted(("watcher", vanishing))))
        sock.close()  # the network dropped it: no close frame, only the end of the TCP stream
        eventually(lambda: watcher.request(ListUsers()) == UserList(("watcher",)))
    assert_clean_log(web_server.log_text())


def test_random_and_broken_websocket_frames(web_server):
    """Hostile bytes after a valid handshake, or instead of one: every connection ends, no
    name stays taken, nothing is logged as an error, and the chat goes on."""
    rng = random.Random(20261201)
    host, port = web_server.web_address
    origin = f"http://{host}:{port}"

    def blast(index):
        try:
            if index % 10 == 0:  # not even a handshake: HTTP-ish noise
                sock = socket.create_connection(web_server.web_address, timeout=WAIT)
                sock.sendall(rng.choice([b"GET /chat HTTP/1.1\r\n", b"\x16\x03\x01", b""]) + rng.randbytes(200))
            else:
                sock, _, answer = handshake(web_server.web_address, origin)
                assert isinstance(answer, AcceptConnection)
                if index % 5 == 1:  # by the rules, a user who then vanishes or leaves
                    chat = [Login(f"user{index}"), ListUsers(), SendTo(f"user{index - 5}", "hi")]
                    sock.sendall(b"".join(binary_frame(encode(message), rng.randbytes(4)) for message in chat))
                else:
                    sock.sendall(random_websocket_frames(rng, 20))
            if index % 3 == 0:
                sock.close()  # gone, mid-message perhaps
                return
            sock.shutdown(socket.SHUT_WR)
            with gevent.Timeout(WAIT):
                while sock.recv(65536):
                    pass
            sock.close()
        except OSError:
            pass  # the server may close first, while we still send

    pool = Pool(20)
    for index in range(300):
        pool.spawn(blast, index)
    pool.join(timeout=60, raise_error=True)
    watcher = Peer(web_server.address)
    try:
        eventually(lambda: watcher.request(ListUsers()) == UserList(()))
        assert watcher.request(Login("watcher")) == OK
    finally:
        watcher.close()
    log = web_server.log_text()
    assert_clean_log(log)
