"""StreamMetrics on its own, and as the scheduler fills it in (fake clock: plain floats)."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto.config import SchedulerConfig
from diaproto.metrics import StreamMetrics
from diaproto.scheduler import Policy, Priority, Scheduler, StreamOptions


class TestStreamMetrics:
    def test_fresh(self) -> None:
        metrics = StreamMetrics(opened_at=3.0)
        assert metrics.time_to_first_byte is None
        assert metrics.interval_mean is None
        assert metrics.jitter is None
        assert metrics.messages_sent == 0
        assert metrics.bytes_sent == 0

    def test_first_send_sets_ttfb_and_has_no_gap(self) -> None:
        metrics = StreamMetrics(opened_at=3.0)
        assert metrics.record_send(3.25, 100) is None
        assert metrics.time_to_first_byte == 0.25
        assert metrics.intervals == 0
        assert metrics.interval_mean is None
        assert (metrics.messages_sent, metrics.bytes_sent) == (1, 100)

    def test_intervals_mean_max_and_jitter(self) -> None:
        metrics = StreamMetrics(opened_at=0.0)
        sends = [1.0, 2.0, 5.0, 6.0]  # gaps 1, 3, 1
        gaps = [metrics.record_send(t, 10) for t in sends]
        assert gaps == [None, 1.0, 3.0, 1.0]
        assert metrics.first_send_at == 1.0
        assert metrics.last_send_at == 6.0
        assert metrics.intervals == 3
        assert metrics.interval_mean == pytest.approx(5 / 3)
        assert metrics.interval_max == 3.0
        assert metrics.jitter == pytest.approx(statistics.pstdev([1.0, 3.0, 1.0]))
        assert (metrics.messages_sent, metrics.bytes_sent) == (4, 40)
        assert metrics.time_to_first_byte == 1.0  # later sends do not move it

    def test_jitter_needs_two_intervals(self) -> None:
        metrics = StreamMetrics(opened_at=0.0)
        metrics.record_send(0.0, 1)
        metrics.record_send(0.5, 1)
        assert metrics.intervals == 1
        assert metrics.jitter is None
        metrics.record_send(1.0, 1)
        assert metrics.jitter == 0.0  # two equal gaps: no jitter

    def test_jitter_never_negative_under_rounding(self) -> None:
        # Three equal gaps of 0.3: in binary, mean(g^2) - mean(g)^2 comes out slightly below
        # zero here; the variance is clamped rather than fed negative to sqrt.
        metrics = StreamMetrics(opened_at=0.0)
        t = 0.0
        for _ in range(4):
            metrics.record_send(t, 1)
            t += 0.3
        mean = metrics.interval_sum / metrics.intervals
        assert metrics.interval_sq_sum / metrics.intervals - mean * mean < 0.0
        assert metrics.jitter == 0.0

    def test_queue_high_water_only_rises(self) -> None:
        metrics = StreamMetrics(opened_at=0.0)
        for depth in [5, 12, 3, 12, 7]:
            metrics.record_queue_depth(depth)
        assert metrics.queue_high_water == 12


@given(st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=3, max_size=40))
def test_jitter_is_the_population_deviation_of_gaps(gaps: list[float]) -> None:
    metrics = StreamMetrics(opened_at=0.0)
    t = 0.0
    metrics.record_send(t, 1)
    recorded = []
    for gap in gaps:
        t2 = t + gap
        recorded.append(t2 - t)  # the gap as the clock's floats give it
        t = t2
        metrics.record_send(t, 1)
    jitter = metrics.jitter
    assert jitter is not None
    assert metrics.intervals == len(gaps)
    assert metrics.interval_max == max(recorded)
    assert metrics.interval_mean == pytest.approx(statistics.fmean(recorded))
    assert jitter == pytest.approx(statistics.pstdev(recorded), abs=1e-6)
    assert not math.isnan(jitter)


@given(
    st.lists(
        st.tuples(st.floats(0.0, 10.0, allow_nan=False), st.integers(1, 5), st.integers(0, 99)),
        max_size=20,
    )
)
def test_a_batch_counts_as_its_messages_one_by_one(batches: list[tuple[float, int, int]]) -> None:
    # record_sends is record_send per message: the messages of a batch follow the first by
    # gaps of zero, which count as intervals and add nothing to the sums or the maximum.
    batched = StreamMetrics(opened_at=0.0)
    single = StreamMetrics(opened_at=0.0)
    t = 0.0
    for gap, count, size in batches:
        t += gap
        expected = [single.record_send(t, size) for _ in range(count)]
        assert batched.record_sends(t, count, size * count) == expected[0]
    assert batched == single


class TestSchedulerMetrics:
    """The scheduler records sends, drops, coalescing and queue depth per stream."""

    def test_ttfb_and_intervals_by_the_fake_clock(self) -> None:
        scheduler: Scheduler[str] = Scheduler(SchedulerConfig(linger=0.0))
        scheduler.open_stream(1, 10.0)
        scheduler.enqueue(1, "a", 5, 10.0)
        assert scheduler.metrics(1).time_to_first_byte is None  # queued is not sent
        scheduler.take(10.5)
        scheduler.enqueue(1, "b", 5, 11.0)
        scheduler.take(11.5)
        scheduler.enqueue(1, "c", 5, 12.0)
        scheduler.take(14.5)
        metrics = scheduler.metrics(1)
        assert metrics.time_to_first_byte == 0.5
        assert metrics.intervals == 2
        assert metrics.interval_max == 3.0
        assert metrics.interval_mean == 2.0
        assert metrics.jitter == 1.0
        assert (metrics.messages_sent, metrics.bytes_sent) == (3, 15)

    def test_a_batch_is_one_interval_per_message(self) -> None:
        scheduler: Scheduler[str] = Scheduler(SchedulerConfig(linger=0.0))
        scheduler.open_stream(1, 0.0)
        scheduler.enqueue(1, "a", 5, 0.0)
        scheduler.take(1.0)
        for payload in "bcd":
            scheduler.enqueue(1, payload, 5, 1.5)
        assert len(scheduler.take(3.0)) == 3
        metrics = scheduler.metrics(1)
        # Gaps 2.0, 0.0, 0.0: the messages of a batch leave together.
        assert metrics.intervals == 3
        assert metrics.interval_sum == 2.0
        assert metrics.interval_max == 2.0
        assert (metrics.messages_sent, metrics.bytes_sent) == (4, 20)

    def test_drops_counted_for_drop_oldest(self) -> None:
        # Payload bytes only (no per-message overhead), so the share holds two messages.
        scheduler: Scheduler[str] = Scheduler(message_overhead=0)
        scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.DROP_OLDEST, limit=20))
        for i in range(5):
            scheduler.enqueue(1, f"m{i}", 10, 0.0)
        assert scheduler.metrics(1).drops == 3
        assert scheduler.metrics(1).queue_high_water == 20
        assert [o.payload for o in scheduler.take(0.0)] == ["m3", "m4"]

    def test_coalesced_counted_for_latest(self) -> None:
        scheduler: Scheduler[str] = Scheduler()
        scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.LATEST))
        for value in ["a", "b", "c"]:
            scheduler.enqueue(1, value, 4, 0.0, key="volume")
        scheduler.enqueue(1, "x", 4, 0.0, key="pitch")
        metrics = scheduler.metrics(1)
        assert metrics.coalesced == 2
        assert metrics.drops == 0
        assert metrics.queue_high_water == 8
        assert sorted(o.payload for o in scheduler.take(0.0)) == ["c", "x"]

    def test_queue_high_water_tracks_the_deepest_backlog(self) -> None:
        scheduler: Scheduler[str] = Scheduler(SchedulerConfig(linger=0.0))
        scheduler.open_stream(1, 0.0, StreamOptions(priority=Priority.INTERACTIVE))
        for i in range(4):
            scheduler.enqueue(1, f"m{i}", 25, 0.0)
        scheduler.take(0.0)
        scheduler.enqueue(1, "late", 10, 1.0)
        assert scheduler.metrics(1).queue_high_water == 100
        assert scheduler.queued_bytes(1) == 10
