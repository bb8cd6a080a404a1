"""The outbound scheduler, by example: streams, enqueue errors, LATEST, finish and discard,
resume from a replay buffer. Time is a plain float passed in; no clock, no I/O."""

from __future__ import annotations

import pytest
from scheduler_support import drain_events, finished, make, payloads

from diaproto.config import SchedulerConfig
from diaproto.errors import LocalProtocolError, ReplayGap
from diaproto.events import StreamFinished, StreamPaused, StreamResumed
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Policy, Priority, Scheduler, StreamOptions


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
