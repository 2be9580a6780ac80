"""The password throttle on its own, on a clock of its own: attempts counted before hashing,
limits per name and address, a bounded number of hashes per name that makes guesses wait
their turn, and an owner who is slowed down but never locked out."""

import pytest

from chatroom.server.storage import throttle
from chatroom.server.storage.throttle import PasswordThrottle, Verdict


@pytest.fixture
def clock():
    """A clock that moves only when the throttle sleeps, or when the test says."""

    class Clock:
        now = 1000.0

        def __call__(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    return Clock()


@pytest.fixture
def gate(clock):
    return PasswordThrottle(clock=clock, sleep=clock.sleep)


def test_three_tries_a_minute_for_a_name_from_an_address(gate, clock):
    for _ in range(throttle.PER_PAIR):
        assert gate.begin("bob", "10.0.0.1") is Verdict.GO
        gate.end("bob", "10.0.0.1", succeeded=False)
    assert gate.begin("bob", "10.0.0.1") is Verdict.TOO_MANY
    assert gate.begin("bob", "10.0.0.2") is Verdict.GO  # another address is not held back
    clock.now += throttle.WINDOW
    assert gate.begin("bob", "10.0.0.1") is Verdict.GO


def test_attempts_count_before_they_are_hashed(gate):
    # A burst: nothing has ended yet, so a check made after hashing would let all through.
    verdicts = [gate.begin("bob", f"10.0.{i % 250}.1") for i in range(750)]
    assert verdicts.count(Verdict.GO) == throttle.HASHES_PER_NAME
    assert [gate.begin("bob", "10.0.0.1")] == [Verdict.TOO_MANY]  # that address's three are spent


def test_one_address_guessing_many_names_is_held_back(gate):
    for i in range(throttle.PER_ADDRESS):
        assert gate.begin(f"user{i}", "10.0.0.9") is Verdict.GO
        gate.end(f"user{i}", "10.0.0.9", succeeded=False)
    assert gate.begin("another", "10.0.0.9") is Verdict.TOO_MANY


def test_guesses_slow_the_owner_down_but_never_lock_them_out(gate, clock):
    assert gate.begin("bob", "192.0.2.7") is Verdict.GO  # bob, from home
    gate.end("bob", "192.0.2.7", succeeded=True)
    for i in range(throttle.HASHES_PER_NAME - 1):  # guesses from everywhere use up the rest of the minute's hashes
        assert gate.begin("bob", f"10.1.{i}.1") is Verdict.GO
        gate.end("bob", f"10.1.{i}.1", succeeded=False)
    assert gate.begin("bob", "10.2.0.1") is Verdict.BUSY  # a guess now would wait too long
    assert gate.begin("bob", "192.0.2.7") is Verdict.GO  # bob's own address does not wait
    gate.end("bob", "192.0.2.7", succeeded=True)
    clock.now += throttle.WINDOW - throttle.MAX_WAIT / 2
    started = clock.now
    assert gate.begin("bob", "198.51.100.3") is Verdict.GO  # bob on a new device: waits its turn
    assert 0 < clock.now - started <= throttle.MAX_WAIT


def test_successes_are_not_counted(gate):
    for _ in range(throttle.PER_PAIR * 3):
        assert gate.begin("bob", "10.0.0.1") is Verdict.GO
        gate.end("bob", "10.0.0.1", succeeded=True)
