"""The outbound scheduler, by example. Time is a plain float passed as ``now`` (a fake clock):
nothing here waits or measures real time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto.config import SchedulerConfig
from diaproto.errors import LocalProtocolError, ReplayGap
from diaproto.events import (
    Event,
    SlowConsumer,
    StreamFinished,
    StreamPaused,
    StreamResumed,
)
from diaproto.metrics import StreamMetrics
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Outgoing, Policy, Priority, Scheduler, StreamOptions


def drain_events(scheduler: Scheduler[str]) -> list[Event]:
    events: list[Event] = []
    while (event := scheduler.next_event()) is not None:
        events.append(event)
    return events


def payloads(batch: list[Outgoing[str]]) -> list[str]:
    return [item.payload for item in batch]


def make(**config: float) -> Scheduler[str]:
    """A scheduler with roomy defaults for examples; override what the test is about."""
    values: dict[str, float] = {
        "batch_bytes": 1000,
        "linger": 0.0,
        "quantum": 100,
        "write_window": 1000,
        "high_watermark": 1000,
        "low_watermark": 500,
        "max_buffered": 2000,
    }
    values.update(config)
    return Scheduler(
        SchedulerConfig(
            batch_bytes=int(values["batch_bytes"]),
            linger=values["linger"],
            quantum=int(values["quantum"]),
            write_window=int(values["write_window"]),
            high_watermark=int(values["high_watermark"]),
            low_watermark=int(values["low_watermark"]),
            max_buffered=int(values["max_buffered"]),
        )
    )


class TestStreams:
    def test_default_config(self) -> None:
        scheduler: Scheduler[str] = Scheduler()
        assert scheduler.config == SchedulerConfig()

    def test_open_and_inspect(self) -> None:
        scheduler = make()
        scheduler.open_stream(4, 0.0, StreamOptions(credit=10))
        scheduler.open_stream(2, 0.0)
        assert scheduler.stream_ids == [4, 2]
        assert scheduler.has_stream(4)
        assert not scheduler.has_stream(3)
        assert scheduler.credit(4) == 10
        assert scheduler.credit(2) is None
        assert scheduler.last_seq(2) == 0
        assert scheduler.queued_bytes(2) == 0
        assert not scheduler.is_paused(2)
        assert scheduler.metrics(2).opened_at == 0.0

    def test_open_twice_is_refused(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0)
        with pytest.raises(LocalProtocolError, match="already open"):
            scheduler.open_stream(1, 0.0)

    @pytest.mark.parametrize("limit", [0, -1])
    def test_limit_must_be_positive(self, limit: int) -> None:
        with pytest.raises(LocalProtocolError, match="limit must be positive"):
            make().open_stream(1, 0.0, StreamOptions(limit=limit))

    def test_unknown_stream(self) -> None:
        scheduler = make()
        for call in (
            lambda: scheduler.enqueue(9, "x", 1, 0.0),
            lambda: scheduler.finish_stream(9),
            lambda: scheduler.metrics(9),
            lambda: scheduler.is_paused(9),
            lambda: scheduler.queued_bytes(9),
            lambda: scheduler.credit(9),
            lambda: scheduler.last_seq(9),
            lambda: scheduler.resume(9, 0, 0.0),
        ):
            with pytest.raises(LocalProtocolError, match="no open stream 9"):
                call()
        assert scheduler.discard_stream(9) == 0
        scheduler.grant_credit(9, 100)  # ignored, like credit for a stream already gone
        assert scheduler.stream_ids == []

    def test_sequence_numbers_count_from_one(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0)
        assert [scheduler.enqueue(1, p, 1, 0.0) for p in "abc"] == [1, 2, 3]
        assert scheduler.last_seq(1) == 3
        assert [(o.stream_id, o.seq, o.payload, o.size) for o in scheduler.take(0.0)] == [
            (1, 1, "a", 1),
            (1, 2, "b", 1),
            (1, 3, "c", 1),
        ]


class TestEnqueueErrors:
    def test_negative_size(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0)
        with pytest.raises(LocalProtocolError, match="negative"):
            scheduler.enqueue(1, "x", -1, 0.0)
        assert scheduler.last_seq(1) == 0

    def test_latest_needs_a_key(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.LATEST))
        with pytest.raises(LocalProtocolError, match="needs a key"):
            scheduler.enqueue(1, "x", 1, 0.0)
        assert scheduler.queued_bytes(1) == 0

    def test_negative_in_flight(self) -> None:
        with pytest.raises(LocalProtocolError, match="cannot be negative"):
            make().set_in_flight(-1)

    def test_enqueue_after_finish(self) -> None:
        scheduler = make(write_window=1)
        scheduler.open_stream(1, 0.0)
        scheduler.enqueue(1, "a", 5, 0.0)
        scheduler.set_in_flight(1)  # window full: "a" stays queued, the stream stays open
        scheduler.finish_stream(1)
        with pytest.raises(LocalProtocolError, match="finished"):
            scheduler.enqueue(1, "b", 5, 0.0)
        assert scheduler.queued_bytes(1) == 5


class TestPriority:
    def test_classes_leave_in_strict_order(self) -> None:
        scheduler = make()
        for sid, priority in enumerate(reversed(Priority)):
            scheduler.open_stream(sid, 0.0, StreamOptions(priority=priority))
            scheduler.enqueue(sid, priority.name, 10, 0.0)
        assert payloads(scheduler.take(0.0)) == ["CONTROL", "INTERACTIVE", "STREAM", "BACKGROUND"]

    def test_lower_class_waits_while_higher_fills_the_batch(self) -> None:
        scheduler = make(batch_bytes=30)
        scheduler.open_stream(1, 0.0, StreamOptions(priority=Priority.INTERACTIVE))
        scheduler.open_stream(2, 0.0, StreamOptions(priority=Priority.STREAM))
        scheduler.enqueue(2, "bulk", 10, 0.0)
        for i in range(5):
            scheduler.enqueue(1, f"i{i}", 10, 0.0)
        assert payloads(scheduler.take(0.0)) == ["i0", "i1", "i2"]
        assert payloads(scheduler.take(0.0)) == ["i3", "i4", "bulk"]

    def test_control_overtakes_queued_bulk(self) -> None:
        scheduler = make(write_window=20)
        scheduler.open_stream(0, 0.0, StreamOptions(priority=Priority.CONTROL))
        scheduler.open_stream(1, 0.0)
        for i in range(4):
            scheduler.enqueue(1, f"d{i}", 10, 0.0)
        assert payloads(scheduler.take(0.0)) == ["d0", "d1"]
        scheduler.set_in_flight(20)
        scheduler.enqueue(0, "cancel", 5, 0.0)
        assert payloads(scheduler.take(0.0)) == ["cancel"]


class TestFairness:
    def test_round_robin_by_bytes(self) -> None:
        scheduler = make(quantum=10, batch_bytes=20)
        scheduler.open_stream(1, 0.0)
        scheduler.open_stream(2, 0.0)
        for i in range(4):
            scheduler.enqueue(1, f"a{i}", 10, 0.0)
            scheduler.enqueue(2, f"b{i}", 5, 0.0)
        taken = []
        while batch := scheduler.take(0.0):
            taken += payloads(batch)
        # One quantum (10 bytes) per turn: one "a", then two "b".
        assert taken == ["a0", "b0", "b1", "a1", "b2", "b3", "a2", "a3"]

    def test_big_message_accumulates_deficit(self) -> None:
        scheduler = make(quantum=10)
        scheduler.open_stream(1, 0.0)
        scheduler.open_stream(2, 0.0)
        scheduler.enqueue(1, "big", 25, 0.0)
        for i in range(6):
            scheduler.enqueue(2, f"s{i}", 10, 0.0)
        # "big" needs three quanta; meanwhile stream 2 gets its two turns.
        assert payloads(scheduler.take(0.0)) == ["s0", "s1", "big", "s2", "s3", "s4", "s5"]

    def test_turn_is_kept_across_takes_when_out_of_room(self) -> None:
        scheduler = make(quantum=30, batch_bytes=10)
        scheduler.open_stream(1, 0.0)
        scheduler.open_stream(2, 0.0)
        for i in range(3):
            scheduler.enqueue(1, f"a{i}", 10, 0.0)
            scheduler.enqueue(2, f"b{i}", 10, 0.0)
        batches = []
        while batch := scheduler.take(0.0):
            batches.append(payloads(batch))
        assert batches == [["a0"], ["a1"], ["a2"], ["b0"], ["b1"], ["b2"]]


@given(
    quantum=st.integers(1, 64),
    batch_bytes=st.integers(1, 200),
    write_window=st.integers(1, 200),
    priority=st.sampled_from(Priority),
    backlogs=st.lists(
        st.lists(st.integers(0, 40), min_size=1, max_size=40), min_size=2, max_size=3
    ),
)
def test_drr_byte_shares_stay_within_one_quantum_and_message(
    quantum: int,
    batch_bytes: int,
    write_window: int,
    priority: Priority,
    backlogs: list[list[int]],
) -> None:
    """While streams of one class all have backlog, their byte counts differ by at most one
    quantum plus the largest message, whatever the batch and window cut."""
    scheduler = make(quantum=quantum, batch_bytes=batch_bytes, write_window=write_window)
    queues: dict[int, list[int]] = {}
    for sid, sizes in enumerate(backlogs, start=1):
        scheduler.open_stream(sid, 0.0, StreamOptions(priority=priority))
        for size in sizes:
            scheduler.enqueue(sid, f"{sid}", size, 0.0)
        queues[sid] = list(sizes)
    biggest = max(max(sizes) for sizes in backlogs)
    sent = dict.fromkeys(queues, 0)
    rounds = 0
    while any(queues.values()):
        batch = scheduler.take(float(rounds))
        assert batch, "a backlog with an open window must make progress"
        rounds += 1
        for item in batch:
            assert item.size == queues[item.stream_id].pop(0)  # in order, none lost
            sent[item.stream_id] += item.size
            if all(queues.values()):
                assert max(sent.values()) - min(sent.values()) <= quantum + biggest


class TestLinger:
    def test_first_message_on_an_idle_connection_leaves_at_once(self) -> None:
        scheduler = make(linger=0.5)
        scheduler.open_stream(1, 0.0)
        scheduler.enqueue(1, "a", 10, 10.0)
        assert payloads(scheduler.take(10.0)) == ["a"]
        assert scheduler.next_deadline() is None  # nothing left to wait for

    def test_second_message_waits_until_last_take_plus_linger(self) -> None:
        scheduler = make(linger=0.5)
        scheduler.open_stream(1, 0.0)
        scheduler.enqueue(1, "a", 10, 10.0)
        scheduler.take(10.0)
        scheduler.enqueue(1, "b", 10, 10.25)
        assert scheduler.take(10.25) == []
        assert scheduler.next_deadline() == 10.5
        scheduler.enqueue(1, "c", 10, 10.375)
        assert scheduler.take(10.4375) == []
        assert payloads(scheduler.take(10.5)) == ["b", "c"]  # together: that is the point

    def test_quiet_connection_does_not_linger(self) -> None:
        scheduler = make(linger=0.5)
        scheduler.open_stream(1, 0.0, StreamOptions(priority=Priority.BACKGROUND))
        scheduler.enqueue(1, "a", 10, 10.0)
        scheduler.take(10.0)
        scheduler.enqueue(1, "b", 10, 11.0)  # a full linger since the last take
        assert payloads(scheduler.take(11.0)) == ["b"]

    @pytest.mark.parametrize("priority", [Priority.CONTROL, Priority.INTERACTIVE])
    def test_high_classes_never_linger(self, priority: Priority) -> None:
        scheduler = make(linger=0.5)
        scheduler.open_stream(1, 0.0, StreamOptions(priority=priority))
        scheduler.enqueue(1, "a", 10, 10.0)
        scheduler.take(10.0)
        scheduler.enqueue(1, "b", 10, 10.125)
        assert payloads(scheduler.take(10.125)) == ["b"]
        assert scheduler.next_deadline() is None

    def test_lingering_message_rides_along_with_control(self) -> None:
        scheduler = make(linger=0.5)
        scheduler.open_stream(0, 0.0, StreamOptions(priority=Priority.CONTROL))
        scheduler.open_stream(1, 0.0)
        scheduler.enqueue(1, "a", 10, 10.0)
        scheduler.take(10.0)
        scheduler.enqueue(1, "b", 10, 10.125)
        assert scheduler.take(10.125) == []
        scheduler.enqueue(0, "ping", 4, 10.25)
        assert payloads(scheduler.take(10.25)) == ["ping", "b"]

    def test_a_full_batch_does_not_wait(self) -> None:
        scheduler = make(linger=0.5, batch_bytes=100)
        scheduler.open_stream(1, 0.0)
        scheduler.open_stream(2, 0.0, StreamOptions(priority=Priority.BACKGROUND))
        scheduler.enqueue(1, "a", 10, 10.0)
        scheduler.take(10.0)
        scheduler.enqueue(1, "b", 60, 10.125)
        scheduler.enqueue(2, "c", 39, 10.125)
        assert scheduler.take(10.125) == []  # 99 bytes: not yet a batch
        scheduler.enqueue(2, "d", 1, 10.125)
        assert payloads(scheduler.take(10.125)) == ["b", "c", "d"]

    def test_zero_size_message_gets_a_deadline(self) -> None:
        # Regression: with only empty messages lingering, next_deadline() said None and they
        # stayed queued until something else happened.
        scheduler = make(linger=0.5)
        scheduler.open_stream(1, 0.0)
        scheduler.enqueue(1, "a", 10, 10.0)
        scheduler.take(10.0)
        scheduler.enqueue(1, "", 0, 10.125)
        assert scheduler.take(10.125) == []
        assert scheduler.next_deadline() == 10.5
        assert payloads(scheduler.take(10.5)) == [""]

    def test_no_linger_deadline_while_nothing_can_go(self) -> None:
        scheduler = make(linger=0.5, write_window=50)
        scheduler.open_stream(1, 0.0)
        scheduler.open_stream(2, 0.0, StreamOptions(credit=0))
        scheduler.enqueue(1, "a", 10, 10.0)
        scheduler.take(10.0)
        scheduler.enqueue(2, "blocked", 10, 10.125)
        assert scheduler.next_deadline() is None  # its only lingering stream has no credit
        scheduler.grant_credit(2, 10)
        assert scheduler.next_deadline() == 10.5
        scheduler.set_in_flight(50)
        assert scheduler.next_deadline() is None  # the window is full: set_in_flight reopens it
        scheduler.set_in_flight(0)
        assert payloads(scheduler.take(10.5)) == ["blocked"]


class TestWindow:
    def test_full_window_holds_everything_but_control(self) -> None:
        scheduler = make(write_window=100)
        scheduler.open_stream(0, 0.0, StreamOptions(priority=Priority.CONTROL))
        scheduler.open_stream(1, 0.0, StreamOptions(priority=Priority.INTERACTIVE))
        scheduler.enqueue(1, "i", 10, 0.0)
        scheduler.enqueue(0, "c", 10, 0.0)
        scheduler.set_in_flight(100)
        assert payloads(scheduler.take(0.0)) == ["c"]
        assert scheduler.take(0.0) == []
        scheduler.set_in_flight(90)
        assert payloads(scheduler.take(0.0)) == ["i"]

    def test_release_is_cut_at_the_window(self) -> None:
        scheduler = make(write_window=100)
        scheduler.open_stream(1, 0.0)
        for i in range(5):
            scheduler.enqueue(1, f"m{i}", 30, 0.0)
        scheduler.set_in_flight(40)
        # 60 bytes of window: two whole messages fill it; a message is never split.
        assert payloads(scheduler.take(0.0)) == ["m0", "m1"]
        scheduler.set_in_flight(50)
        # 50 bytes: the second message starts inside the window and is not split.
        assert payloads(scheduler.take(0.0)) == ["m2", "m3"]

    def test_batch_cap(self) -> None:
        scheduler = make(batch_bytes=50)
        scheduler.open_stream(1, 0.0)
        for i in range(6):
            scheduler.enqueue(1, f"m{i}", 20, 0.0)
        assert payloads(scheduler.take(0.0)) == ["m0", "m1", "m2"]
        assert payloads(scheduler.take(0.0)) == ["m3", "m4", "m5"]


class TestCredit:
    def test_sends_only_while_credit_is_positive(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(credit=10))
        for i in range(5):
            scheduler.enqueue(1, f"m{i}", 4, 0.0)
        assert payloads(scheduler.take(0.0)) == ["m0", "m1", "m2"]  # 10 -> 6 -> 2 -> -2
        assert scheduler.credit(1) == -2
        assert scheduler.take(0.0) == []
        scheduler.grant_credit(1, 3)
        assert payloads(scheduler.take(0.0)) == ["m3"]
        assert scheduler.credit(1) == -3
        scheduler.grant_credit(1, 100)
        assert payloads(scheduler.take(0.0)) == ["m4"]
        assert scheduler.credit(1) == 93

    def test_zero_credit_holds_the_stream_but_not_its_class(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(credit=0))
        scheduler.open_stream(2, 0.0)
        scheduler.enqueue(1, "held", 5, 0.0)
        scheduler.enqueue(2, "free", 5, 0.0)
        assert payloads(scheduler.take(0.0)) == ["free"]
        scheduler.grant_credit(1, 5)
        assert payloads(scheduler.take(0.0)) == ["held"]

    def test_credit_taken_away_stops_the_stream(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(credit=10))
        scheduler.enqueue(1, "a", 5, 0.0)
        scheduler.grant_credit(1, -10)
        assert scheduler.take(0.0) == []
        assert scheduler.queued_bytes(1) == 5

    def test_grant_to_a_stream_without_credit_is_ignored(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0)
        scheduler.grant_credit(1, 100)
        assert scheduler.credit(1) is None

    def test_finished_stream_waits_for_credit_before_it_is_forgotten(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(credit=0))
        scheduler.enqueue(1, "a", 5, 0.0)
        scheduler.finish_stream(1)
        assert scheduler.take(0.0) == []
        assert scheduler.has_stream(1)
        assert drain_events(scheduler) == []
        scheduler.grant_credit(1, 5)
        assert payloads(scheduler.take(0.0)) == ["a"]
        assert not scheduler.has_stream(1)
        assert drain_events(scheduler) == [finished(1)]


def finished(stream_id: int) -> StreamFinished:
    """For comparisons: StreamFinished compares by stream id only (metrics are not compared)."""
    return StreamFinished(stream_id, StreamMetrics(opened_at=0.0))


class TestBudget:
    def test_pause_stream_past_the_budget_raises_and_queues_nothing(self) -> None:
        scheduler = make(high_watermark=100, low_watermark=50, max_buffered=100)
        replay: ReplayBuffer[str] = ReplayBuffer(1)
        scheduler.open_stream(1, 0.0, StreamOptions(replay=replay, limit=1000))
        scheduler.enqueue(1, "a", 60, 0.0)
        scheduler.set_in_flight(30)
        with pytest.raises(LocalProtocolError, match="connection budget of 100"):
            scheduler.enqueue(1, "b", 11, 0.0)
        assert scheduler.queued_bytes(1) == 60
        assert scheduler.buffered_bytes == 90
        assert scheduler.last_seq(1) == 1
        assert replay.last_seq == 1  # nothing recorded for replay either
        assert scheduler.metrics(1).drops == 0
        assert scheduler.enqueue(1, "b", 10, 0.0) == 2  # exactly up to the budget is fine
        assert scheduler.buffered_bytes == 100

    def test_drop_oldest_fills_its_share_exactly_before_dropping(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.DROP_OLDEST, limit=20))
        scheduler.enqueue(1, "a", 10, 0.0)
        scheduler.enqueue(1, "b", 10, 0.0)
        assert scheduler.metrics(1).drops == 0
        scheduler.enqueue(1, "c", 1, 0.0)
        assert scheduler.metrics(1).drops == 1
        assert payloads(scheduler.take(0.0)) == ["b", "c"]

    def test_drop_oldest_makes_room_from_its_own_queue(self) -> None:
        scheduler = make(high_watermark=100, low_watermark=50, max_buffered=100)
        scheduler.open_stream(1, 0.0, StreamOptions(credit=0))  # PAUSE, holds 60 bytes
        scheduler.open_stream(2, 0.0, StreamOptions(policy=Policy.DROP_OLDEST, limit=1000))
        scheduler.enqueue(1, "p", 60, 0.0)
        for i in range(4):
            scheduler.enqueue(2, f"d{i}", 10, 0.0)
        assert scheduler.enqueue(2, "d4", 25, 0.0) == 5  # needs 25: d0..d2 go
        assert scheduler.metrics(2).drops == 3
        assert scheduler.buffered_bytes == 95
        assert payloads(scheduler.take(0.0)) == ["d3", "d4"]

    def test_drop_oldest_drops_the_new_message_when_its_queue_cannot_make_room(self) -> None:
        scheduler = make(high_watermark=100, low_watermark=50, max_buffered=100)
        scheduler.open_stream(1, 0.0, StreamOptions(credit=0))
        scheduler.open_stream(2, 0.0, StreamOptions(policy=Policy.DROP_OLDEST, limit=1000))
        scheduler.enqueue(1, "p", 90, 0.0)
        scheduler.enqueue(2, "d0", 5, 0.0)
        assert scheduler.enqueue(2, "d1", 20, 0.0) is None
        assert scheduler.metrics(2).drops == 2  # d0 made room in vain, then d1 itself
        assert scheduler.queued_bytes(2) == 0
        assert scheduler.last_seq(2) == 1  # no sequence number spent on d1
        # The emptied stream is harmless: finishing it forgets it at once.
        scheduler.finish_stream(2)
        assert drain_events(scheduler) == [finished(2)]
        assert scheduler.take(0.0) == []

    def test_latest_over_the_budget_drops_older_keys_first(self) -> None:
        scheduler = make(high_watermark=100, low_watermark=50, max_buffered=100)
        scheduler.open_stream(1, 0.0, StreamOptions(credit=0))
        scheduler.open_stream(2, 0.0, StreamOptions(policy=Policy.LATEST, limit=1000))
        scheduler.enqueue(1, "p", 70, 0.0)
        scheduler.enqueue(2, "x1", 10, 0.0, key="x")
        scheduler.enqueue(2, "y1", 10, 0.0, key="y")
        assert scheduler.enqueue(2, "z1", 15, 0.0, key="z") == 3
        assert scheduler.metrics(2).drops == 1
        assert payloads(scheduler.take(0.0)) == ["y1", "z1"]

    def test_disconnect_past_the_budget_is_slow_at_once(self) -> None:
        scheduler = make(high_watermark=100, low_watermark=50, max_buffered=100)
        scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.DISCONNECT, grace=60.0, credit=0))
        scheduler.enqueue(1, "a", 95, 0.0)
        assert scheduler.enqueue(1, "b", 10, 0.0) is None
        assert drain_events(scheduler) == [SlowConsumer(1, 95)]
        assert scheduler.enqueue(1, "c", 10, 0.0) is None
        assert drain_events(scheduler) == []  # reported once
        assert scheduler.metrics(1).drops == 2
        assert scheduler.queued_bytes(1) == 95


class TestPauseResume:
    def test_over_share_pauses_and_draining_resumes(self) -> None:
        scheduler = make(high_watermark=1000, low_watermark=100)
        scheduler.open_stream(1, 0.0, StreamOptions(limit=50))
        scheduler.enqueue(1, "a", 30, 0.0)
        assert drain_events(scheduler) == []
        scheduler.enqueue(1, "b", 30, 0.0)
        assert drain_events(scheduler) == [StreamPaused(1)]
        assert scheduler.is_paused(1)
        assert scheduler.enqueue(1, "c", 30, 0.0) == 3  # a paused stream may still queue
        assert drain_events(scheduler) == []  # ... without a second StreamPaused
        scheduler.take(0.0)
        assert drain_events(scheduler) == [StreamResumed(1)]
        assert not scheduler.is_paused(1)

    def test_connection_high_watermark_pauses_the_producer(self) -> None:
        scheduler = make(high_watermark=100, low_watermark=40, max_buffered=500)
        scheduler.open_stream(1, 0.0, StreamOptions(limit=1000))
        scheduler.open_stream(2, 0.0, StreamOptions(limit=1000))
        scheduler.enqueue(1, "a", 60, 0.0)
        scheduler.enqueue(2, "b", 50, 0.0)
        assert drain_events(scheduler) == [StreamPaused(2)]
        assert not scheduler.is_paused(1)  # told when it next produces
        scheduler.enqueue(1, "c", 1, 0.0)
        assert drain_events(scheduler) == [StreamPaused(1)]

    def test_in_flight_bytes_count_toward_the_watermark(self) -> None:
        scheduler = make(high_watermark=100, low_watermark=40, max_buffered=500)
        scheduler.open_stream(1, 0.0)
        scheduler.set_in_flight(100)
        scheduler.enqueue(1, "a", 1, 0.0)
        assert drain_events(scheduler) == [StreamPaused(1)]
        scheduler.set_in_flight(40)
        assert drain_events(scheduler) == []  # 1 queued + 40 in flight > 40
        scheduler.set_in_flight(39)
        assert drain_events(scheduler) == [StreamResumed(1)]
        assert scheduler.queued_bytes(1) == 1

    def test_resume_needs_both_low_marks(self) -> None:
        scheduler = make(write_window=30, high_watermark=1000, low_watermark=40, max_buffered=2000)
        scheduler.open_stream(1, 0.0, StreamOptions(limit=40))  # resumes at <= 10 queued bytes
        for i in range(5):
            scheduler.enqueue(1, f"m{i}", 10, 0.0)
        assert drain_events(scheduler) == [StreamPaused(1)]
        assert len(scheduler.take(0.0)) == 3
        scheduler.set_in_flight(30)
        assert drain_events(scheduler) == []  # 20 queued + 30 in flight > 40
        scheduler.set_in_flight(0)
        assert drain_events(scheduler) == []  # 20 queued > 40 // 4
        assert len(scheduler.take(0.0)) == 2
        assert drain_events(scheduler) == [StreamResumed(1)]

    def test_resumed_even_when_the_take_is_empty(self) -> None:
        # Regression: bytes freed by coalescing on another stream left a stream paused for
        # good, since only a non-empty take looked at the pauses.
        scheduler = make(high_watermark=100, low_watermark=50, max_buffered=1000)
        scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.LATEST, credit=0))
        scheduler.open_stream(2, 0.0)
        scheduler.enqueue(1, "big", 150, 0.0, key="k")
        scheduler.enqueue(2, "y", 1, 0.0)
        assert drain_events(scheduler) == [StreamPaused(2)]
        assert payloads(scheduler.take(0.0)) == ["y"]
        assert drain_events(scheduler) == []  # 150 still queued on stream 1
        scheduler.enqueue(1, "small", 1, 0.0, key="k")
        assert scheduler.take(1.0) == []
        assert drain_events(scheduler) == [StreamResumed(2)]

    def test_discard_frees_room_and_resumes(self) -> None:
        scheduler = make(high_watermark=100, low_watermark=50, max_buffered=1000)
        scheduler.open_stream(1, 0.0, StreamOptions(credit=0))
        scheduler.open_stream(2, 0.0)
        scheduler.enqueue(1, "big", 150, 0.0)
        scheduler.enqueue(2, "y", 1, 0.0)
        assert drain_events(scheduler) == [StreamPaused(1), StreamPaused(2)]
        assert scheduler.discard_stream(1) == 150
        assert drain_events(scheduler) == [finished(1), StreamResumed(2)]


class TestDisconnect:
    def test_slow_only_after_the_grace_period(self) -> None:
        scheduler = make()
        scheduler.open_stream(
            1, 0.0, StreamOptions(policy=Policy.DISCONNECT, limit=50, grace=2.0, credit=0)
        )
        scheduler.enqueue(1, "a", 40, 1.0)
        assert scheduler.next_deadline() is None  # within its share: no clock
        scheduler.enqueue(1, "b", 40, 3.0)
        assert scheduler.next_deadline() == 5.0
        scheduler.enqueue(1, "c", 40, 4.0)
        assert scheduler.next_deadline() == 5.0  # the clock started at 3.0 and keeps running
        scheduler.handle_timer(4.875)
        assert drain_events(scheduler) == []
        scheduler.handle_timer(5.0)
        assert drain_events(scheduler) == [SlowConsumer(1, 120)]
        assert scheduler.next_deadline() is None
        scheduler.handle_timer(9.0)
        assert drain_events(scheduler) == []  # once

    def test_draining_in_time_stops_the_clock(self) -> None:
        scheduler = make()
        scheduler.open_stream(
            1, 0.0, StreamOptions(policy=Policy.DISCONNECT, limit=50, grace=2.0, credit=0)
        )
        scheduler.enqueue(1, "a", 40, 0.0)
        scheduler.enqueue(1, "b", 40, 0.0)
        scheduler.grant_credit(1, 40)
        assert payloads(scheduler.take(1.0)) == ["a"]
        assert scheduler.next_deadline() is None
        scheduler.handle_timer(10.0)
        assert drain_events(scheduler) == []
        scheduler.enqueue(1, "c", 40, 12.0)  # over again: a fresh clock
        assert scheduler.next_deadline() == 14.0

    def test_a_stream_within_its_share_is_not_slow_whatever_the_others_hold(self) -> None:
        # Regression: the connection-wide high watermark started the DISCONNECT clock, and a
        # drained stream was then declared slow with nothing queued. The server's own
        # control stream (DISCONNECT, grace 0) aborted connections this way whenever a
        # PAUSE stream was legitimately over the watermark.
        scheduler = make(high_watermark=100, low_watermark=10, max_buffered=1000)
        scheduler.open_stream(
            0, 0.0, StreamOptions(priority=Priority.CONTROL, policy=Policy.DISCONNECT, grace=0.0)
        )
        scheduler.open_stream(1, 0.0, StreamOptions(priority=Priority.BACKGROUND, credit=0))
        scheduler.enqueue(1, "audio", 150, 0.0)
        scheduler.enqueue(0, "ping", 4, 0.0)
        assert scheduler.next_deadline() is None
        assert payloads(scheduler.take(0.0)) == ["ping"]
        scheduler.handle_timer(0.0)
        scheduler.handle_timer(100.0)
        assert drain_events(scheduler) == [StreamPaused(1)]

    def test_earliest_clock_is_the_deadline(self) -> None:
        scheduler = make()
        scheduler.open_stream(
            1, 0.0, StreamOptions(policy=Policy.DISCONNECT, limit=5, grace=3.0, credit=0)
        )
        scheduler.open_stream(
            2, 0.0, StreamOptions(policy=Policy.DISCONNECT, limit=5, grace=1.0, credit=0)
        )
        scheduler.enqueue(1, "a", 10, 0.0)
        scheduler.enqueue(2, "b", 10, 1.0)
        assert scheduler.next_deadline() == 2.0
        scheduler.handle_timer(2.0)
        assert drain_events(scheduler) == [SlowConsumer(2, 10)]
        assert scheduler.next_deadline() == 3.0
        scheduler.handle_timer(3.0)
        assert drain_events(scheduler) == [SlowConsumer(1, 10)]


class TestLatest:
    def test_keeps_exactly_the_newest_per_key(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.LATEST, credit=0))
        for key, value in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1"), ("a", "a3")]:
            scheduler.enqueue(1, value, 10, 0.0, key=key)
        assert scheduler.queued_bytes(1) == 30
        assert scheduler.metrics(1).coalesced == 2
        scheduler.grant_credit(1, 1000)
        batch = scheduler.take(0.0)
        assert [(o.key, o.payload, o.seq) for o in batch] == [
            ("b", "b1", 2),
            ("c", "c1", 4),
            ("a", "a3", 5),
        ]

    def test_a_taken_value_is_not_replaced(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.LATEST))
        scheduler.enqueue(1, "a1", 10, 0.0, key="a")
        assert payloads(scheduler.take(0.0)) == ["a1"]
        scheduler.enqueue(1, "a2", 10, 0.0, key="a")
        assert scheduler.metrics(1).coalesced == 0
        assert payloads(scheduler.take(0.0)) == ["a2"]

    def test_keys_on_other_policies_are_carried_but_not_coalesced(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0)
        scheduler.enqueue(1, "a1", 10, 0.0, key="a")
        scheduler.enqueue(1, "a2", 10, 0.0, key="a")
        assert [(o.key, o.payload) for o in scheduler.take(0.0)] == [("a", "a1"), ("a", "a2")]


class TestFinishAndDiscard:
    def test_finish_an_idle_stream(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0)
        scheduler.finish_stream(1)
        assert not scheduler.has_stream(1)
        events = drain_events(scheduler)
        assert events == [finished(1)]

    def test_finish_after_the_queue_drains_with_metrics(self) -> None:
        scheduler = make(batch_bytes=10)
        scheduler.open_stream(1, 2.0)
        scheduler.enqueue(1, "a", 10, 2.0)
        scheduler.enqueue(1, "b", 10, 2.0)
        scheduler.finish_stream(1)
        scheduler.finish_stream(1)  # again: harmless while it drains
        assert payloads(scheduler.take(3.0)) == ["a"]
        assert scheduler.has_stream(1)
        assert drain_events(scheduler) == []
        assert payloads(scheduler.take(4.0)) == ["b"]
        assert not scheduler.has_stream(1)
        (event,) = drain_events(scheduler)
        assert isinstance(event, StreamFinished)
        assert event.stream_id == 1
        assert event.metrics.messages_sent == 2
        assert event.metrics.bytes_sent == 20
        assert event.metrics.time_to_first_byte == 1.0
        assert event.metrics.interval_max == 1.0
        with pytest.raises(LocalProtocolError):
            scheduler.finish_stream(1)

    def test_discard_drops_everything_queued(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(priority=Priority.INTERACTIVE))
        scheduler.open_stream(2, 0.0)
        for i in range(3):
            scheduler.enqueue(1, f"x{i}", 10, 0.0)
        scheduler.enqueue(2, "keep", 7, 0.0)
        assert scheduler.discard_stream(1) == 30
        (event,) = drain_events(scheduler)
        assert isinstance(event, StreamFinished)
        assert event.metrics.drops == 3
        assert not scheduler.has_stream(1)
        assert scheduler.queued_bytes() == 7
        assert payloads(scheduler.take(0.0)) == ["keep"]
        assert scheduler.discard_stream(1) == 0

    def test_discard_a_credit_blocked_stream(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(credit=0))
        scheduler.enqueue(1, "x", 10, 0.0)
        assert scheduler.discard_stream(1) == 10
        assert drain_events(scheduler) == [finished(1)]
        assert scheduler.take(0.0) == []
        assert scheduler.buffered_bytes == 0


class TestResume:
    def test_requeues_exactly_what_was_missed(self) -> None:
        replay: ReplayBuffer[str] = ReplayBuffer(1)
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(replay=replay))
        for p in "abcd":
            scheduler.enqueue(1, p, 5, 0.0)
        assert payloads(scheduler.take(0.0)) == ["a", "b", "c", "d"]
        assert scheduler.resume(1, 2, 1.0) == 2
        assert [(o.seq, o.payload) for o in scheduler.take(1.0)] == [(3, "c"), (4, "d")]
        assert scheduler.enqueue(1, "e", 5, 1.0) == 5  # numbering goes on

    def test_replaces_what_is_still_queued(self) -> None:
        # Regression: messages still queued were queued a second time behind the replay,
        # so they went out twice and out of order.
        replay: ReplayBuffer[str] = ReplayBuffer(1)
        scheduler = make(write_window=10)
        scheduler.open_stream(1, 0.0, StreamOptions(replay=replay))
        for p in "abcd":
            scheduler.enqueue(1, p, 5, 0.0)
        assert payloads(scheduler.take(0.0)) == ["a", "b"]  # c, d still queued
        scheduler.set_in_flight(0)
        assert scheduler.resume(1, 1, 1.0) == 3
        assert scheduler.queued_bytes(1) == 15
        taken = []
        while batch := scheduler.take(1.0):
            taken += [(o.seq, o.payload) for o in batch]
        assert taken == [(2, "b"), (3, "c"), (4, "d")]

    def test_resume_past_everything_empties_the_queue(self) -> None:
        replay: ReplayBuffer[str] = ReplayBuffer(1)
        scheduler = make(high_watermark=100, low_watermark=50, max_buffered=1000)
        scheduler.open_stream(1, 0.0, StreamOptions(replay=replay, credit=0))
        scheduler.enqueue(1, "a", 150, 0.0)
        assert drain_events(scheduler) == [StreamPaused(1)]
        assert scheduler.resume(1, 1, 1.0) == 0  # the consumer already has it
        assert scheduler.queued_bytes(1) == 0
        assert drain_events(scheduler) == [StreamResumed(1)]

    def test_gap_raises_and_leaves_the_queue_alone(self) -> None:
        replay: ReplayBuffer[str] = ReplayBuffer(1, max_messages=2)
        scheduler = make(write_window=5)
        scheduler.open_stream(1, 0.0, StreamOptions(replay=replay))
        for p in "abcd":
            scheduler.enqueue(1, p, 5, 0.0)
        assert payloads(scheduler.take(0.0)) == ["a"]
        with pytest.raises(ReplayGap) as info:
            scheduler.resume(1, 1, 1.0)  # 2 has left the replay window (it holds 3, 4)
        assert info.value.oldest_available == 3
        assert scheduler.queued_bytes(1) == 15
        scheduler.set_in_flight(0)
        assert [o.seq for o in scheduler.take(1.0)] == [2]

    def test_on_a_new_connection(self) -> None:
        replay: ReplayBuffer[str] = ReplayBuffer(1)
        first = make()
        first.open_stream(1, 0.0, StreamOptions(replay=replay))
        for p in "abc":
            first.enqueue(1, p, 5, 0.0)
        first.take(0.0)
        second = make()
        second.open_stream(1, 5.0, StreamOptions(replay=replay))
        assert second.last_seq(1) == 3
        assert second.resume(1, 1, 5.0) == 2
        assert second.enqueue(1, "d", 5, 5.0) == 4
        assert [(o.seq, o.payload) for o in second.take(5.0)] == [(2, "b"), (3, "c"), (4, "d")]

    def test_replay_may_pass_the_budget_and_pauses(self) -> None:
        replay: ReplayBuffer[str] = ReplayBuffer(1)
        scheduler = make(high_watermark=20, low_watermark=10, max_buffered=20)
        scheduler.open_stream(1, 0.0, StreamOptions(replay=replay, limit=100))
        for p in "abcd":
            scheduler.enqueue(1, p, 5, 0.0)
            scheduler.take(0.0)
        scheduler.enqueue(1, "e", 5, 0.0)
        assert scheduler.resume(1, 0, 1.0) == 5
        assert scheduler.buffered_bytes == 25  # past max_buffered: shared payloads
        assert drain_events(scheduler) == [StreamPaused(1)]
        with pytest.raises(LocalProtocolError, match="budget"):
            scheduler.enqueue(1, "f", 0, 1.0)

    def test_finished_stream_with_nothing_missed_is_forgotten(self) -> None:
        replay: ReplayBuffer[str] = ReplayBuffer(1)
        scheduler = make()
        scheduler.open_stream(1, 0.0, StreamOptions(replay=replay, credit=0))
        scheduler.enqueue(1, "a", 5, 0.0)
        scheduler.finish_stream(1)
        assert scheduler.resume(1, 1, 0.0) == 0
        assert not scheduler.has_stream(1)
        assert drain_events(scheduler) == [finished(1)]

    def test_disconnect_clock_follows_the_replaced_queue(self) -> None:
        replay: ReplayBuffer[str] = ReplayBuffer(1)
        scheduler = make()
        scheduler.open_stream(
            1,
            0.0,
            StreamOptions(policy=Policy.DISCONNECT, limit=10, grace=5.0, replay=replay, credit=0),
        )
        for p in "abc":
            scheduler.enqueue(1, p, 5, 1.0)
        assert scheduler.next_deadline() == 6.0
        scheduler.resume(1, 0, 2.0)  # the same three: still over, the clock runs on
        assert scheduler.next_deadline() == 6.0
        scheduler.resume(1, 2, 3.0)  # one left: within its share
        assert scheduler.next_deadline() is None
        scheduler.resume(1, 0, 4.0)  # over again from now
        assert scheduler.next_deadline() == 9.0

    def test_needs_a_replay_buffer(self) -> None:
        scheduler = make()
        scheduler.open_stream(1, 0.0)
        with pytest.raises(LocalProtocolError, match="without a replay buffer"):
            scheduler.resume(1, 0, 0.0)


def test_zero_high_watermark_still_opens_streams() -> None:
    # Regression: the default share (the high watermark) may be 0 in a valid config; opening
    # a stream without a limit then failed, blaming a limit the caller never gave.
    scheduler = make(high_watermark=0, low_watermark=0, max_buffered=100)
    scheduler.open_stream(1, 0.0)
    scheduler.enqueue(1, "a", 1, 0.0)
    assert drain_events(scheduler) == [StreamPaused(1)]
    assert payloads(scheduler.take(0.0)) == ["a"]
    assert drain_events(scheduler) == [StreamResumed(1)]


def test_a_stream_sharing_a_replay_buffer_numbers_from_it_but_records_nothing() -> None:
    shared: ReplayBuffer[bytes] = ReplayBuffer(7)
    shared.append(1, b"a", 1)
    shared.append(2, b"b", 1)
    scheduler: Scheduler[bytes] = Scheduler()
    scheduler.open_stream(7, 0.0, StreamOptions(replay=shared, record=False))
    shared.append(3, b"c", 1)  # the owner records each message before sending it
    assert scheduler.enqueue(7, b"c", 1, 0.0) == 3
    assert shared.last_seq == 3 and len(shared) == 3
    assert scheduler.resume(7, 1, 0.0) == 2  # b, c again with their own numbers
    assert [(i.seq, i.payload) for i in scheduler.take(0.0)] == [(2, b"b"), (3, b"c")]
