"""Paced streams (``StreamOptions.pace`` and ``lead``): the clock allows a stream so many
bytes a second, a lead ahead, for consumers that cannot grant credit (SSE) or that want
their data evenly spaced (a player); with credit, both bound it. Time is a plain float;
no clock, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scheduler_support import make, payloads

from diaproto.errors import LocalProtocolError
from diaproto.scheduler import Outgoing, Scheduler, StreamOptions

PACE = 100.0  # bytes a second
LEAD = 300  # bytes ahead of the pace


def paced(scheduler: Scheduler[str], stream_id: int = 1, now: float = 0.0) -> None:
    scheduler.open_stream(stream_id, now, StreamOptions(pace=PACE, lead=LEAD))


def sent_bytes(batch: list[Outgoing[str]]) -> int:
    return sum(item.size for item in batch)


@pytest.mark.parametrize(
    ("pace", "lead"),
    [(None, 10), (10.0, None), (10.0, 0), (10.0, -5), (0.0, 100), (-1.0, 100), (float("nan"), 100)],
)
def test_a_pace_needs_a_positive_lead_and_rate(pace: float | None, lead: int | None) -> None:
    with pytest.raises(LocalProtocolError, match="positive pace and lead"):
        StreamOptions[str](pace=pace, lead=lead)


def test_the_lead_goes_at_once_then_the_clock_lets_the_rest_through() -> None:
    scheduler = make()
    paced(scheduler)
    for i in range(10):
        scheduler.enqueue(1, f"m{i}", 100, 0.0)
    # The lead: three 100-byte messages, then nothing until the clock grants more.
    assert payloads(scheduler.take(0.0)) == ["m0", "m1", "m2"]
    assert scheduler.take(0.0) == []
    assert scheduler.allowance(1) == 0
    # Credit 0 needs one byte to send: due after 1 byte's time (1.5 bytes', to be sure).
    assert scheduler.next_deadline() == pytest.approx(0.015)
    assert scheduler.take(0.005) == []  # half a byte: nothing yet, and it is not lost
    assert payloads(scheduler.take(0.0151)) == ["m3"]
    assert scheduler.allowance(1) == 1 - 100
    # The next one once the credit is above 0 again: 99 bytes more, 1 s/100 each.
    deadline = scheduler.next_deadline()
    assert deadline is not None and deadline == pytest.approx(0.0151 + 1.0, abs=0.011)
    assert scheduler.take(deadline - 0.02) == []
    assert payloads(scheduler.take(deadline)) == ["m4"]


def test_time_at_the_lead_earns_nothing() -> None:
    scheduler = make()
    paced(scheduler)
    assert scheduler.take(100.0) == []  # a long idle start
    assert scheduler.allowance(1) == LEAD  # not 300 + 100 s * 100 B/s
    for i in range(5):
        scheduler.enqueue(1, f"m{i}", 100, 100.0)
    assert sent_bytes(scheduler.take(100.0)) == LEAD


def test_nothing_queued_means_no_pacing_deadline() -> None:
    scheduler = make()
    paced(scheduler)
    scheduler.enqueue(1, "big", 400, 0.0)  # sent whole on positive credit: credit -100
    assert payloads(scheduler.take(0.0)) == ["big"]
    assert scheduler.allowance(1) == -100
    assert scheduler.next_deadline() is None  # nothing waits for the clock
    scheduler.enqueue(1, "next", 10, 0.5)
    assert scheduler.next_deadline() == pytest.approx((101.5) / PACE)


def test_not_while_the_transport_is_full() -> None:
    scheduler = make()
    paced(scheduler)
    for i in range(4):
        scheduler.enqueue(1, f"m{i}", 100, 0.0)
    scheduler.take(0.0)
    assert scheduler.next_deadline(linger=False) is None
    assert scheduler.next_deadline(linger=True) is not None


def test_a_paced_stream_passes_through_once_the_clock_gave_credit() -> None:
    scheduler = make()
    paced(scheduler)
    first = scheduler.pass_through(1, "a", 400, 0.0)
    assert first is not None and scheduler.allowance(1) == LEAD - 400
    scheduler.set_in_flight(0)
    assert scheduler.pass_through(1, "b", 10, 0.5) is None  # -100 + 50: still waiting
    assert scheduler.pass_through(1, "b", 10, 1.02) is not None  # -100 + 102 > 0


def test_with_credit_both_bound_the_stream() -> None:
    scheduler = make()
    scheduler.open_stream(1, 0.0, StreamOptions(credit=200, pace=PACE, lead=LEAD))
    scheduler.open_stream(2, 0.0)
    assert scheduler.allowance(2) is None
    for i in range(6):
        scheduler.enqueue(1, f"m{i}", 100, 0.0)
    # The credit (200) binds first; no clock deadline while the consumer owes credit.
    assert payloads(scheduler.take(0.0)) == ["m0", "m1"]
    assert scheduler.next_deadline() is None
    scheduler.grant_credit(1, 1000)
    # Now the lead (300) binds: one more, then the clock.
    assert payloads(scheduler.take(0.0)) == ["m2"]
    assert scheduler.allowance(1) == 0
    assert scheduler.next_deadline() == pytest.approx(1.5 / PACE)
    assert scheduler.take(0.005) == []
    assert payloads(scheduler.take(0.0151)) == ["m3"]
    assert (scheduler.credit(1), scheduler.allowance(1)) == (1200 - 400, 1 - 100)


def test_a_message_refused_for_want_of_credit_takes_nothing_from_the_clock() -> None:
    scheduler = make()
    scheduler.open_stream(1, 0.0, StreamOptions(credit=0, pace=PACE, lead=LEAD))
    assert scheduler.pass_through(1, "x", 10, 0.0) is None
    assert scheduler.allowance(1) == LEAD
    scheduler.grant_credit(1, 10)
    assert scheduler.pass_through(1, "x", 10, 0.0) is not None
    assert (scheduler.credit(1), scheduler.allowance(1)) == (0, LEAD - 10)


def test_a_small_burst_spreads_what_credit_lets_through_in_bunches() -> None:
    """A player grants credit in bunches (its audio device runs in blocks): with a burst of
    one message, the clock spaces them; the first lead still goes at once."""
    scheduler = make()
    options: StreamOptions[str] = StreamOptions(credit=300, pace=PACE, lead=300, burst=100)
    scheduler.open_stream(1, 0.0, options)
    assert scheduler.options(1) is options
    for i in range(10):
        scheduler.enqueue(1, f"m{i}", 100, 0.0)
    assert payloads(scheduler.take(0.0)) == ["m0", "m1", "m2"]  # the lead
    scheduler.grant_credit(1, 200)  # a bunch of two, long after: the clock saved 100 only
    assert payloads(scheduler.take(2.0)) == ["m3"]
    assert scheduler.next_deadline() == pytest.approx(2.0 + 1.5 / PACE)
    assert scheduler.take(2.01) == []
    assert payloads(scheduler.take(2.0151)) == ["m4"]


@pytest.mark.parametrize(
    ("pace", "lead", "burst"), [(None, None, 10), (10.0, 10, 0), (10.0, 10, -1)]
)
def test_a_burst_bounds_a_paced_stream(pace: float | None, lead: int | None, burst: int) -> None:
    with pytest.raises(LocalProtocolError, match="burst"):
        StreamOptions[str](pace=pace, lead=lead, burst=burst)


def test_a_forgotten_paced_stream_leaves_the_clock() -> None:
    scheduler = make()
    paced(scheduler, 1)
    paced(scheduler, 2)
    scheduler.open_stream(3, 0.0)
    for stream_id in (1, 2, 3):
        for i in range(5):
            scheduler.enqueue(stream_id, f"{stream_id}.{i}", 100, 0.0)
    scheduler.take(0.0)
    scheduler.take(0.0)
    assert scheduler.discard_stream(1) == 200
    scheduler.discard_stream(3)
    # Only stream 2 waits for the clock now.
    assert scheduler.next_deadline() == pytest.approx(1.5 / PACE)
    scheduler.finish_stream(2)
    assert payloads(scheduler.take(10.0)) == ["2.3", "2.4"]
    assert not scheduler.has_stream(2)
    assert scheduler.next_deadline() is None


@given(
    sizes=st.lists(st.integers(1, 250), min_size=1, max_size=40),
    steps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=60),
    burst=st.none() | st.integers(1, 400),
)
def test_never_ahead_of_the_pace_by_more_than_the_lead_and_one_message(
    sizes: list[int], steps: list[float], burst: int | None
) -> None:
    """Whatever the sizes and however the clock moves, what has been sent by time t is at
    most the lead plus t * pace plus one message (a message is sent whole on positive
    credit); and when every deadline is honoured, everything is sent eventually."""
    scheduler = make(high_watermark=10**6, low_watermark=10**5, max_buffered=10**7)
    scheduler.open_stream(1, 0.0, StreamOptions(pace=PACE, lead=LEAD, burst=burst))
    for i, size in enumerate(sizes):
        scheduler.enqueue(1, str(i), size, 0.0)
    now, sent = 0.0, 0
    for step in [0.0, *steps]:
        now += step
        sent += sent_bytes(scheduler.take(now))
        assert sent <= max(LEAD, burst or 0) + now * PACE + max(sizes)
    while (deadline := scheduler.next_deadline()) is not None:
        assert deadline > now
        now = deadline
        sent += sent_bytes(scheduler.take(now))
        assert sent <= max(LEAD, burst or 0) + now * PACE + max(sizes)
    assert sent == sum(sizes)
