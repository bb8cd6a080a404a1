"""``Scheduler.withdraw``: taking back the queued message of a key on a LATEST stream (a
progress report made moot by its request's response). Time is a plain float."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diaproto.config import SchedulerConfig
from diaproto.errors import LocalProtocolError
from diaproto.events import Event, StreamPaused, StreamResumed
from diaproto.scheduler import Policy, Priority, Scheduler, StreamOptions

LATEST, BULK = 1, 2


def make() -> Scheduler[str]:
    config = SchedulerConfig(
        batch_bytes=1000,
        linger=0.0,
        quantum=100,
        write_window=1000,
        high_watermark=100,
        low_watermark=50,
        max_buffered=2000,
    )
    # Figures in payload bytes: the per-message overhead has its own tests.
    scheduler: Scheduler[str] = Scheduler(config, message_overhead=0)
    scheduler.open_stream(
        LATEST, 0.0, StreamOptions(priority=Priority.INTERACTIVE, policy=Policy.LATEST)
    )
    return scheduler


def drain(scheduler: Scheduler[str]) -> list[Event]:
    events: list[Event] = []
    while (event := scheduler.next_event()) is not None:
        events.append(event)
    return events


def test_withdraw_takes_back_the_queued_message_of_a_key() -> None:
    scheduler = make()
    scheduler.enqueue(LATEST, "a1", 10, 0.0, key="a")
    scheduler.enqueue(LATEST, "b1", 20, 0.0, key="b")
    assert scheduler.withdraw(LATEST, "a")
    assert scheduler.queued_bytes(LATEST) == 20
    assert scheduler.queued_bytes() == 20
    assert scheduler.metrics(LATEST).coalesced == 1
    assert [item.payload for item in scheduler.take(0.0)] == ["b1"]


def test_withdraw_of_nothing_queued() -> None:
    scheduler = make()
    assert not scheduler.withdraw(LATEST, "a")
    scheduler.enqueue(LATEST, "a1", 10, 0.0, key="a")
    scheduler.take(0.0)
    assert not scheduler.withdraw(LATEST, "a")  # already sent: too late to take back
    assert scheduler.metrics(LATEST).coalesced == 0


def test_withdraw_then_enqueue_the_same_key() -> None:
    scheduler = make()
    scheduler.enqueue(LATEST, "a1", 10, 0.0, key="a")
    scheduler.withdraw(LATEST, "a")
    assert not scheduler.withdraw(LATEST, "a")
    scheduler.enqueue(LATEST, "a2", 10, 0.0, key="a")
    assert [item.payload for item in scheduler.take(0.0)] == ["a2"]


def test_withdrawing_the_last_message_leaves_the_stream_idle() -> None:
    scheduler = make()
    scheduler.enqueue(LATEST, "a1", 10, 0.0, key="a")
    scheduler.withdraw(LATEST, "a")
    assert scheduler.take(0.0) == []
    scheduler.enqueue(LATEST, "a2", 10, 0.0, key="a")
    assert [item.payload for item in scheduler.take(0.0)] == ["a2"]


def test_withdraw_on_another_policy_finds_nothing() -> None:
    scheduler = make()
    scheduler.open_stream(BULK, 0.0)
    scheduler.enqueue(BULK, "x", 10, 0.0, key="a")
    assert not scheduler.withdraw(BULK, "a")
    assert scheduler.queued_bytes(BULK) == 10


def test_withdraw_on_an_unknown_stream() -> None:
    with pytest.raises(LocalProtocolError):
        make().withdraw(9, "a")


def test_withdraw_frees_room_for_a_paused_stream() -> None:
    scheduler = make()
    scheduler.open_stream(BULK, 0.0, StreamOptions(limit=1000))
    scheduler.set_in_flight(1000)  # the window is full: nothing leaves
    scheduler.enqueue(LATEST, "big", 500, 0.0, key="a")
    scheduler.enqueue(BULK, "x", 10, 0.0)
    assert drain(scheduler) == [StreamPaused(BULK)]  # the connection is over high watermark
    scheduler.set_in_flight(0)
    assert scheduler.withdraw(LATEST, "a")
    assert drain(scheduler) == [StreamResumed(BULK)]


def test_withdraw_from_a_finishing_stream() -> None:
    scheduler = make()
    scheduler.enqueue(LATEST, "a1", 10, 0.0, key="a")
    scheduler.finish_stream(LATEST)
    scheduler.withdraw(LATEST, "a")
    assert scheduler.take(0.0) == []
    assert not scheduler.has_stream(LATEST)  # forgotten once its turn came up empty


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from("abc"), st.integers(0, 30)),
        max_size=30,
    )
)
def test_withdraw_against_a_model(steps: list[tuple[bool, str, int]]) -> None:
    """Enqueue or withdraw at random: the queue always holds the newest of each key not
    withdrawn since, in the order the keys were last enqueued."""
    scheduler = make()
    model: dict[str, tuple[str, int]] = {}
    for n, (withdrawing, key, size) in enumerate(steps):
        if withdrawing:
            assert scheduler.withdraw(LATEST, key) == (key in model)
            model.pop(key, None)
        else:
            model.pop(key, None)
            model[key] = (f"{key}{n}", size)
            scheduler.enqueue(LATEST, f"{key}{n}", size, 0.0, key=key)
        assert scheduler.queued_bytes(LATEST) == sum(size for _, size in model.values())
    taken = []
    while batch := scheduler.take(0.0):
        taken += [item.payload for item in batch]
    assert taken == [payload for payload, _ in model.values()]


def test_queued_items_is_a_snapshot_in_leaving_order() -> None:
    """(``queued_items``: what a closing resumable stream records as unsent.)"""
    scheduler = make()
    scheduler.open_stream(BULK, 0.0)
    scheduler.open_stream(3, 0.0, StreamOptions(priority=Priority.CONTROL))
    scheduler.enqueue(BULK, "bulk", 5, 0.0)
    scheduler.enqueue(LATEST, "p1", 5, 0.0, key="a")
    scheduler.enqueue(3, "c1", 5, 0.0)
    scheduler.enqueue(3, "c2", 5, 0.0)
    assert [item.payload for item in scheduler.queued_items()] == ["c1", "c2", "p1", "bulk"]
    assert scheduler.queued_bytes() == 20  # nothing was taken
