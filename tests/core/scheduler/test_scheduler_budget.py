"""The byte budget, through the scheduler: the hard budget, pause and resume at the
watermarks, and a DISCONNECT stream's grace before it is closed as a slow consumer."""

from __future__ import annotations

import pytest
from scheduler_support import drain_events, finished, make, payloads

from diaproto.errors import LocalProtocolError
from diaproto.events import SlowConsumer, StreamPaused, StreamResumed
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Policy, Priority, StreamOptions


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


def test_zero_high_watermark_still_opens_streams() -> None:
    # Regression: the default share (the high watermark) may be 0 in a valid config; opening
    # a stream without a limit then failed, blaming a limit the caller never gave.
    scheduler = make(high_watermark=0, low_watermark=0, max_buffered=100)
    scheduler.open_stream(1, 0.0)
    scheduler.enqueue(1, "a", 1, 0.0)
    assert drain_events(scheduler) == [StreamPaused(1)]
    assert payloads(scheduler.take(0.0)) == ["a"]
    assert drain_events(scheduler) == [StreamResumed(1)]
