"""SIGTERM: the server stops reading at once, gives clients the drain timeout to take what they
were sent, keeps what a registered user did not take, and resets no connection over data in
flight."""

import signal
import time

import gevent
import pytest

from chatroom.protocol import Authenticate, Hello, Incoming, Register, SendTo, StoredMessage
from chatroom.testing import OK, WAIT, assert_clean_log, eventually

pytestmark = pytest.mark.process

WINDOW = 500  # requests a client keeps unanswered


def test_nothing_is_answered_once_the_server_is_told_to_stop(server_process, peer_at):
    server = server_process("--drain-timeout", "2")
    sender, reader = peer_at(server.address), peer_at(server.address)
    sender.login("sender")
    reader.login("reader")
    answered: list[float] = []  # when each OK came
    delivered = []

    def send():
        sent = 0
        while True:  # a window of requests in flight, as long as they are answered
            while sent - len(answered) < WINDOW:
                sender.send(SendTo("reader", f"{sent}"))
                sent += 1
            gevent.sleep(0)

    def take_replies():
        while True:
            assert sender.next_event() == OK
            answered.append(time.monotonic())

    def read():
        """Until the server has closed the connection (and what it sent has all come)."""
        while data := reader.sock.recv(65536):
            for event in reader.decoder.receive_data(data):
                assert isinstance(event, Incoming)
                delivered.append(event.text)

    workers = [gevent.spawn(send), gevent.spawn(take_replies)]
    reading = gevent.spawn(read)
    try:
        eventually(lambda: len(answered) >= 20_000)
        told = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=WAIT) == 0
        reading.get(timeout=WAIT)
    finally:
        gevent.killall([*workers, reading])
    after = sum(1 for moment in answered if moment > told)
    # Those already read when the signal came (a window, and what the kernel held), not a
    # drain's worth of new requests.
    assert after <= 2 * WINDOW, f"{after} requests answered after SIGTERM"
    assert delivered == [str(i) for i in range(len(delivered))] and len(delivered) >= len(answered)
    assert_clean_log(server.log_text())


def test_what_a_registered_user_did_not_take_in_the_drain_is_kept_for_them(server_process, peer_at, tmp_path):
    quotas = ("--mailbox-mb", "64", "--mailbox-share", "1")  # room for all it may not take
    server = server_process("--drain-timeout", "0.5", "--sendq", str(64 << 20), *quotas, data_dir=tmp_path)
    reader = peer_at(server.address, receive_buffer=4096)  # and it never reads
    assert reader.request(Hello(1)) == OK and reader.request(Register("reader", "secret")) == OK
    sender = peer_at(server.address)
    sender.login("sender")
    # Far more than the kernel buffers hold, so that most of it waits in the server's outbox;
    # less than a mailbox holds (1,000 messages), so that all of that can be kept.
    count = 600
    sender.send(*[SendTo("reader", f"{i} " + "x" * 60_000) for i in range(count)])
    assert all(sender.next_event() == OK for _ in range(count))
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=WAIT * 2) == 0
    taken = []  # what reached the reader's socket before the server closed it: no reset lost it
    with gevent.Timeout(WAIT):
        while data := reader.sock.recv(1 << 20):
            taken += [event.text for event in reader.decoder.receive_data(data)]

    again = server_process(data_dir=tmp_path)
    back = peer_at(again.address)
    assert back.request(Hello(1)) == OK
    back.send(Authenticate("reader", "secret"))
    assert back.next_event() == OK
    kept = []
    while len(taken) + len(kept) < count:
        event = back.next_event()
        assert isinstance(event, StoredMessage)
        kept.append(event.text)
    assert [int(text.split()[0]) for text in taken + kept] == list(range(count))
    assert "messages kept for registered users" in server.log_text()
