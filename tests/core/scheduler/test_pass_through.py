"""The pass-through: on an idle connection a message may leave at once, with no queue and no
batch. Whenever the scheduler lets one through, the result is what queueing it and taking
the next batch would have given (that batch is the message alone, with the same sequence
number, credit, metrics, recording and events); whenever it declines, nothing changed."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from scheduler_support import drain_events, make

from diaproto.config import SchedulerConfig
from diaproto.errors import LocalProtocolError
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Outgoing, Policy, Priority, Scheduler, StreamOptions

DATA, OTHER = 1, 2


@dataclass(frozen=True)
class Setup:
    """How two identical schedulers are made and brought to the moment of the send."""

    config: SchedulerConfig
    overhead: int
    priority: Priority
    policy: Policy
    limit: int | None
    credit: int | None
    finishing: bool
    queued_here: int  # messages queued on DATA before the send (taken or not, see take_at)
    queued_other: int  # and on OTHER
    take_at: float | None  # a take before the send (sets linger's clock), if any
    in_flight: int
    size: int
    now: float

    def build(self) -> tuple[Scheduler[bytes], ReplayBuffer[bytes]]:
        scheduler: Scheduler[bytes] = Scheduler(self.config, message_overhead=self.overhead)
        replay: ReplayBuffer[bytes] = ReplayBuffer(DATA, max_messages=64, max_bytes=1 << 20)
        options = StreamOptions(
            priority=self.priority,
            policy=self.policy,
            limit=self.limit,
            credit=self.credit,
            replay=replay,
        )
        scheduler.open_stream(DATA, 0.0, options)
        scheduler.open_stream(OTHER, 0.0, StreamOptions(priority=Priority.INTERACTIVE))
        # (A PAUSE stream may refuse past the hard budget: the same in both schedulers.)
        with suppress(LocalProtocolError):
            for n in range(self.queued_here):
                scheduler.enqueue(DATA, b"q%d" % n, 10, 0.0, key=n)
        with suppress(LocalProtocolError):
            for n in range(self.queued_other):
                scheduler.enqueue(OTHER, b"o%d" % n, 10, 0.0)
        if self.take_at is not None:
            scheduler.take(self.take_at)
        scheduler.set_in_flight(self.in_flight)
        if self.finishing:
            scheduler.finish_stream(DATA)
        drain_events(scheduler)  # type: ignore[arg-type]
        return scheduler, replay


def configs() -> st.SearchStrategy[SchedulerConfig]:
    @st.composite
    def build(draw: st.DrawFn) -> SchedulerConfig:
        max_buffered = draw(st.integers(50, 3000))
        high = draw(st.integers(0, max_buffered))
        return SchedulerConfig(
            batch_bytes=draw(st.integers(1, 400)),
            linger=draw(st.sampled_from([0.0, 0.002, 1.0])),
            quantum=draw(st.integers(1, 200)),
            write_window=draw(st.integers(1, 400)),
            high_watermark=high,
            low_watermark=draw(st.integers(0, high)),
            max_buffered=max_buffered,
        )

    return build()


@st.composite
def setups(draw: st.DrawFn) -> Setup:
    policy = draw(st.sampled_from(list(Policy)))
    return Setup(
        config=draw(configs()),
        overhead=draw(st.sampled_from([0, 16, 168])),
        priority=draw(st.sampled_from(list(Priority))),
        policy=policy,
        limit=draw(st.none() | st.integers(1, 1500)),
        credit=draw(st.none() | st.integers(-20, 300)),
        finishing=draw(st.sampled_from([False, False, False, True])),
        # Mostly idle, where letting through can happen.
        queued_here=draw(st.sampled_from([0, 0, 0, 1, 2])),
        queued_other=draw(st.sampled_from([0, 0, 0, 1, 2])),
        take_at=draw(st.none() | st.sampled_from([0.0, 0.001, 0.5])),
        in_flight=draw(st.sampled_from([0, 0, 0, 5, 1000])),
        size=draw(st.integers(0, 600) | st.integers(0, 40)),
        now=draw(st.sampled_from([0.0, 0.001, 0.003, 2.0])),
    )


def fields(item: Outgoing[bytes]) -> tuple[object, ...]:
    return (item.stream_id, item.seq, item.payload, item.size, item.key)


def observed(scheduler: Scheduler[bytes], replay: ReplayBuffer[bytes]) -> object:
    """Everything a caller can see of DATA and the connection."""
    open_ = scheduler.has_stream(DATA)
    return (
        scheduler.last_seq(DATA) if open_ else None,
        scheduler.credit(DATA) if open_ else None,
        scheduler.is_paused(DATA) if open_ else None,
        scheduler.metrics(DATA) if open_ else None,
        scheduler.queued_bytes(),
        scheduler.charged_bytes(),
        [(e.seq, e.payload, e.size) for e in replay.since(0)],
        drain_events(scheduler),  # type: ignore[arg-type]
    )


@settings(max_examples=400)
@given(setups())
def test_a_message_let_through_is_the_batch_that_enqueue_and_take_would_give(
    setup: Setup,
) -> None:
    passing, passing_replay = setup.build()
    queueing, queueing_replay = setup.build()
    payload = b"x" * setup.size
    if setup.policy is Policy.LATEST or setup.finishing:
        # Never let through (a LATEST message needs a key; a finished stream refuses).
        assert passing.pass_through(DATA, payload, setup.size, setup.now) is None
        return
    before = observed(passing, passing_replay)
    queued = passing.has_queued  # what the setup queued (past the budget it refused some)
    item = passing.pass_through(DATA, payload, setup.size, setup.now)
    event("let through" if item is not None else "declined")
    if item is None:
        assert observed(passing, passing_replay) == before  # declined: nothing happened
        return
    # Let through: only when nothing was queued or in flight.
    assert not queued and setup.in_flight == 0
    assert queueing.enqueue(DATA, payload, setup.size, setup.now) == item.seq
    batch = queueing.take(setup.now)
    assert [fields(x) for x in batch] == [fields(item)]
    assert passing.in_flight_bytes == setup.size  # counted until the transport reports
    passing.took(setup.now)
    passing.set_in_flight(queueing.in_flight_bytes)
    assert observed(passing, passing_replay) == observed(queueing, queueing_replay)
    assert passing.next_deadline() == queueing.next_deadline()


def test_the_first_message_on_an_idle_stream_is_let_through() -> None:
    scheduler: Scheduler[bytes] = Scheduler()
    scheduler.open_stream(DATA, 0.0)
    item = scheduler.pass_through(DATA, b"abc", 3, 1.0)
    assert item is not None
    assert (item.stream_id, item.seq, item.payload, item.size) == (DATA, 1, b"abc", 3)
    assert scheduler.metrics(DATA).messages_sent == 1
    # The next one queues: the first counts as in flight until the transport reports.
    assert scheduler.pass_through(DATA, b"def", 3, 1.0) is None
    scheduler.set_in_flight(0)
    scheduler.took(1.0)
    # A lingering class waits for company right after a batch...
    assert scheduler.pass_through(DATA, b"def", 3, 1.001) is None
    # ... and not once linger is over.
    assert scheduler.pass_through(DATA, b"def", 3, 1.01) is not None


@pytest.mark.parametrize(
    ("case", "options", "size"),
    [
        ("over its share", StreamOptions(limit=10), 11),
        ("over the high watermark", StreamOptions(limit=1500), 1001),
        ("over the hard budget", StreamOptions(policy=Policy.DROP_OLDEST, limit=5000), 2001),
        ("out of credit", StreamOptions(credit=0), 1),
        ("a LATEST stream", StreamOptions(policy=Policy.LATEST), 1),
        ("a negative size", StreamOptions(), -1),
    ],
)
def test_declined(case: str, options: StreamOptions[bytes], size: int) -> None:
    scheduler: Scheduler[bytes] = make(linger=0.0)  # type: ignore[assignment]
    scheduler.open_stream(DATA, 0.0, options)
    assert scheduler.pass_through(DATA, b"x", size, 0.0) is None, case
    assert scheduler.pass_through(9, b"x", 1, 0.0) is None  # no such stream


def test_declined_while_anything_is_queued_or_in_flight() -> None:
    scheduler: Scheduler[bytes] = make(linger=0.0)  # type: ignore[assignment]
    scheduler.open_stream(DATA, 0.0)
    scheduler.open_stream(OTHER, 0.0, StreamOptions(priority=Priority.BACKGROUND))
    scheduler.enqueue(OTHER, b"later", 5, 0.0)
    assert scheduler.pass_through(DATA, b"x", 1, 0.0) is None  # it would go first: queue it
    scheduler.take(0.0)
    scheduler.set_in_flight(5)
    assert scheduler.pass_through(DATA, b"x", 1, 0.0) is None  # the transport holds bytes
    scheduler.set_in_flight(0)
    assert scheduler.pass_through(DATA, b"x", 1, 0.0) is not None
