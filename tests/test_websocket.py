"""WebSocketStream, the server's end of a browser's connection, over a socket pair: one frame
per message in, one message per frame out, nothing at all once a close frame has gone, and a
close frame that reaches even a peer still sending."""

import gevent
import pytest
from gevent import socket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

from chatroom.codec import encode
from chatroom.protocol import ListUsers, Login
from chatroom.server.connection.web import WebSocketStream
from chatroom.testing import WAIT


@pytest.fixture
def pair():
    """(the server's WebSocketStream, the client's socket, the client's wsproto), open."""
    server_sock, client_sock = socket.socketpair()
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="localhost", target="/chat")))
    request = next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    assert isinstance(request, Request) and isinstance(next(client.events()), AcceptConnection)
    stream = WebSocketStream(server_sock, server)
    yield stream, client_sock, client
    stream.raw.close()
    client_sock.close()


def events_until_closed(sock, client) -> list:
    """Everything the client gets, until the server's end of the stream."""
    events = []
    with gevent.Timeout(WAIT):
        while data := sock.recv(65536):
            client.receive_data(data)
            events += client.events()
    return events


def test_each_message_is_one_frame_and_each_frame_goes_out_as_one_message(pair):
    stream, sock, client = pair
    sock.sendall(client.send(BytesMessage(encode(Login("ann")))) + client.send(BytesMessage(encode(ListUsers()))))
    with gevent.Timeout(WAIT):
        received = b""
        while len(received) < len(encode(Login("ann")) + encode(ListUsers())):
            received += stream.receive()
    assert received == encode(Login("ann")) + encode(ListUsers())
    frames = encode(ListUsers()) * 3
    stream.send(frames[:4])  # a frame cut short waits for its end
    stream.send(frames[4:])
    stream.raw.close()
    assert [event.data for event in events_until_closed(sock, client)] == [encode(ListUsers())] * 3


def test_the_end_of_the_stream_without_a_close_frame_is_a_quiet_end(pair):
    stream, sock, _ = pair
    sock.close()
    with gevent.Timeout(WAIT):
        assert stream.receive() == b""
    stream.close()  # nothing to answer, and nothing raised


def test_after_a_violation_the_close_frame_is_the_last_thing_sent(pair):
    stream, sock, client = pair
    sock.sendall(client.send(TextMessage("frames go in binary messages")))
    with gevent.Timeout(WAIT):
        assert stream.receive() == b""
    stream.send(encode(ListUsers()))  # a reply that was still on its way: it must not follow
    stream.close()
    with gevent.Timeout(WAIT):
        sent = b""
        while data := sock.recv(65536):
            sent += data
    # One unmasked close frame (opcode 8), code 1008, and not a byte after it.
    assert sent[0] == 0x88 and len(sent) == 2 + sent[1] and sent[2:4] == (1008).to_bytes(2, "big")


def test_a_message_longer_than_a_frame_may_be_is_refused(pair):
    stream, sock, client = pair
    sender = gevent.spawn(sock.sendall, client.send(BytesMessage(b"\x03" + bytes(300_000))))
    with gevent.Timeout(WAIT):
        assert stream.receive() == b""
    closing = gevent.spawn(stream.close)  # the peer may still be sending: closed gracefully
    sender.kill()
    sock.shutdown(socket.SHUT_WR)
    (closed,) = events_until_closed(sock, client)
    closing.join(WAIT)
    assert isinstance(closed, CloseConnection) and closed.code == 1009
