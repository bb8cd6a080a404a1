"""Who goes next, through the scheduler: strict priority, deficit round-robin within a
class, batching with linger, the write window and credit. Time is a plain float passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scheduler_support import drain_events, finished, make, payloads

from diaproto.scheduler import Priority, StreamOptions


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
