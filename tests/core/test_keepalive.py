"""Keepalive: every Due outcome, and the deadline with each timeout disabled."""

from __future__ import annotations

import pytest

from diaproto.config import Timeouts
from diaproto.keepalive import Due, Keepalive

T = Timeouts(ping_interval=20.0, ping_timeout=10.0, idle=100.0, close_timeout=5.0)


def test_nothing_due_before_the_ping_interval() -> None:
    k = Keepalive(T, 0.0)
    assert k.deadline() == 20.0
    assert k.due(19.999) is Due.NOTHING


def test_ping_due_after_quiet_from_the_peer() -> None:
    k = Keepalive(T, 0.0)
    assert k.due(20.0) is Due.SEND_PING
    k.on_ping_sent(20.0)
    assert k.deadline() == 30.0
    assert k.due(29.0) is Due.NOTHING  # waiting for the answer, no second ping
    assert k.due(30.0) is Due.PING_TIMEOUT


def test_any_byte_answers_the_ping() -> None:
    k = Keepalive(T, 0.0)
    k.on_ping_sent(20.0)
    k.on_receive(25.0)
    assert k.ping_sent_at is None
    assert k.deadline() == 45.0
    assert k.due(44.0) is Due.NOTHING
    assert k.due(45.0) is Due.SEND_PING


def test_idle_counts_messages_not_bytes() -> None:
    k = Keepalive(T, 0.0)
    for t in range(20, 100, 20):
        k.on_receive(float(t))  # pongs keep it alive ...
    assert k.due(99.0) is Due.NOTHING
    assert k.deadline() == 100.0  # ... but not past the idle timeout
    assert k.due(100.0) is Due.IDLE_TIMEOUT
    k.on_activity(100.0)
    assert k.due(100.0) is Due.SEND_PING  # 100 >= 80 + 20
    assert k.deadline() == 100.0


def test_idle_wins_over_ping_timeout() -> None:
    k = Keepalive(T, 0.0)
    k.on_ping_sent(95.0)
    assert k.due(100.0) is Due.IDLE_TIMEOUT


def test_close_timeout_replaces_every_other_timer() -> None:
    k = Keepalive(T, 0.0)
    k.on_ping_sent(20.0)
    k.on_close_sent(22.0)
    assert k.deadline() == 27.0
    assert k.due(26.9) is Due.NOTHING
    assert k.due(1000.0) is Due.CLOSE_TIMEOUT  # no ping timeout or idle once closing


def test_close_without_close_timeout_waits_forever() -> None:
    k = Keepalive(Timeouts(close_timeout=None), 0.0)
    k.on_close_sent(1.0)
    assert k.deadline() is None
    assert k.due(1e12) is Due.NOTHING


@pytest.mark.parametrize(
    ("timeouts", "expected"),
    [
        (Timeouts(ping_interval=None, ping_timeout=10.0, idle=100.0), 100.0),
        (Timeouts(ping_interval=20.0, ping_timeout=10.0, idle=None), 20.0),
        (Timeouts(ping_interval=None, ping_timeout=None, idle=None), None),
        (Timeouts(ping_interval=20.0, ping_timeout=None, idle=None), 20.0),
    ],
)
def test_deadline_with_timeouts_disabled(timeouts: Timeouts, expected: float | None) -> None:
    k = Keepalive(timeouts, 0.0)
    assert k.deadline() == expected
    if expected is None:
        assert k.due(1e9) is Due.NOTHING
    else:
        assert k.due(expected - 0.001) is Due.NOTHING
        assert k.due(expected) is not Due.NOTHING
    if timeouts.ping_interval is None:
        assert k.due(99.0) is Due.NOTHING  # never a ping


def test_ping_without_ping_timeout_never_times_out() -> None:
    k = Keepalive(Timeouts(ping_interval=20.0, ping_timeout=None, idle=None), 0.0)
    assert k.due(20.0) is Due.SEND_PING
    k.on_ping_sent(20.0)
    assert k.deadline() is None
    assert k.due(1e9) is Due.NOTHING


def test_ping_timeout_and_idle_both_set_after_a_ping() -> None:
    k = Keepalive(Timeouts(ping_interval=20.0, ping_timeout=50.0, idle=60.0), 0.0)
    k.on_ping_sent(20.0)
    assert k.deadline() == 60.0  # idle comes before the ping timeout (70)
    assert k.due(60.0) is Due.IDLE_TIMEOUT
