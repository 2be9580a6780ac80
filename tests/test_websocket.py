"""WebSocketStream, the server's end of a browser's connection, over a socket pair: one frame
per message in, one message per frame out, nothing at all once a close frame has gone, and a
close frame that reaches even a peer still sending."""

import gevent
import pytest
from gevent import socket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, Request, TextMessage

from chatroom.codec import encode
from chatroom.protocol import ListUsers, Login
from chatroom.server.connection.websocket import WebSocketStream
from chatroom.testing import WAIT


@pytest.fixture
def open_pair():
    """open_pair(frame_timeout=30): (the server's WebSocketStream, the client's socket, the
    client's wsproto), open; all closed at the end."""
    opened = []

    def open_pair(frame_timeout=30.0):
        server_sock, client_sock = socket.socketpair()
        client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
        server.receive_data(client.send(Request(host="localhost", target="/chat")))
        request = next(server.events())
        client.receive_data(server.send(AcceptConnection()))
        assert isinstance(request, Request) and isinstance(next(client.events()), AcceptConnection)
        stream = WebSocketStream(server_sock, server, frame_timeout)
        opened.append((stream, client_sock))
        return stream, client_sock, client

    yield open_pair
    for stream, client_sock in opened:
        stream._sock.close()
        client_sock.close()


@pytest.fixture
def pair(open_pair):
    return open_pair()


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
    stream._sock.close()
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


def close_code(sock, client) -> int | None:
    """The code of the close frame the client gets before the end of the stream."""
    closing = [event for event in events_until_closed(sock, client) if isinstance(event, CloseConnection)]
    return closing[0].code if closing else None


def test_a_ping_flood_is_answered_at_a_bounded_rate_then_closed(pair):
    stream, sock, client = pair
    sender = gevent.spawn(sock.sendall, b"".join(client.send(Ping(b"%d" % i)) for i in range(1000)))
    with gevent.Timeout(WAIT):
        assert stream.receive() == b""  # closed: too many control frames
    closing = gevent.spawn(stream.close)  # gracefully: the peer may still be sending
    sender.join(WAIT)
    sock.shutdown(socket.SHUT_WR)
    events = events_until_closed(sock, client)
    pongs = [event for event in events if isinstance(event, Pong)]
    assert 1 <= len(pongs) <= 10
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1008
    closing.join(WAIT)


def test_a_few_pings_are_answered_and_the_chat_goes_on(pair):
    stream, sock, client = pair
    sock.sendall(
        b"".join(client.send(Ping(b"%d" % i)) for i in range(3)) + client.send(BytesMessage(encode(Login("a"))))
    )
    with gevent.Timeout(WAIT):
        assert stream.receive() == encode(Login("a"))
        answers = b""
        while answers.count(b"\x8a") < 3:  # three pong frames
            answers += sock.recv(65536)
    client.receive_data(answers)
    assert [event.payload for event in client.events()] == [b"0", b"1", b"2"]


def refusal_code(stream, sock, client) -> int | None:
    """Once the stream refuses what the client sent (its receive() ends): the close code the
    client gets, while the stream closes gracefully."""
    with gevent.Timeout(WAIT):
        assert stream.receive() == b""
    closing = gevent.spawn(stream.close)  # gracefully: the peer may still be sending
    sock.shutdown(socket.SHUT_WR)
    code = close_code(sock, client)
    closing.join(WAIT)
    return code


def test_a_flood_of_empty_fragments_is_closed(pair):
    stream, sock, client = pair
    fragments = b"".join(client.send(BytesMessage(b"", message_finished=False)) for _ in range(500))
    gevent.spawn(sock.sendall, fragments)
    assert refusal_code(stream, sock, client) == 1008


def test_an_unfinished_message_is_closed_at_the_frame_timeout(open_pair):
    stream, sock, client = open_pair(frame_timeout=0.3)
    sock.sendall(client.send(BytesMessage(encode(Login("half"))[:3], message_finished=False)))
    assert refusal_code(stream, sock, client) == 1008


def test_a_ping_between_messages_starts_no_frame_timer(open_pair):
    stream, sock, client = open_pair(frame_timeout=0.2)
    sock.sendall(client.send(Ping(b"still here")))
    reader = gevent.spawn(stream.receive)
    gevent.sleep(0.5)  # longer than the frame timeout: a whole ping began no message
    sock.sendall(client.send(BytesMessage(encode(ListUsers()))))
    assert reader.get(timeout=WAIT) == encode(ListUsers())


def test_a_protocol_error_is_answered_with_a_close_frame_that_says_so(pair):
    stream, sock, client = pair
    sock.sendall(bytes((0x82 | 0x40, 0x80 | 1)) + b"mask" + b"x")  # a reserved bit set
    with gevent.Timeout(WAIT):
        assert stream.receive() == b""
    closing = gevent.spawn(stream.close)  # gracefully: the peer may still be sending
    sock.shutdown(socket.SHUT_WR)
    with gevent.Timeout(WAIT):
        sent = b""
        while data := sock.recv(65536):
            sent += data
    assert sent[0] == 0x88 and sent[2:4] == (1002).to_bytes(2, "big")  # protocol error
    closing.join(WAIT)


def test_a_timeout_of_the_callers_passes_through_and_closes_nothing(pair):
    # The session waits a moment in receive() before it parks a quiet connection: that wait
    # ending is not the client's fault.
    stream, sock, client = pair
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.2):
        stream.receive()
    sock.sendall(client.send(BytesMessage(encode(ListUsers()))))
    with gevent.Timeout(WAIT):
        assert stream.receive() == encode(ListUsers())


def test_a_timeout_of_the_callers_while_a_message_is_unfinished_leaves_its_time_running(open_pair):
    stream, sock, client = open_pair(frame_timeout=0.5)
    sock.sendall(client.send(BytesMessage(encode(Login("half"))[:3], message_finished=False)))
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.2):
        stream.receive()
    left = stream.unfinished_for()
    assert left is not None and 0 < left < 0.5
