"""The per-message overhead: every queued message counts its size plus the overhead against
its stream's share, the watermarks and the hard budget; the constant is what holding a
message costs (measured here), and so is the replay buffer's per-entry figure."""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto.config import SchedulerConfig
from diaproto.errors import LocalProtocolError
from diaproto.events import StreamPaused
from diaproto.replay import ENTRY_OVERHEAD, ReplayBuffer
from diaproto.scheduler import Policy, Priority, Scheduler, StreamOptions
from diaproto.scheduler.budget import MESSAGE_OVERHEAD, Budget

ROOMY = SchedulerConfig(high_watermark=1 << 40, low_watermark=0, max_buffered=1 << 40)
OVERHEADS = st.one_of(st.just(MESSAGE_OVERHEAD), st.integers(0, 400))

# --- the constants are what the memory costs ------------------------------------------------

Payload = bytes | str
MAKERS: dict[str, Callable[[int, int], Payload]] = {
    # A payload object of its own per message (a shared one would cost nothing more).
    "bytes": lambda i, size: bytes([i % 256]) * size,
    "str": lambda i, size: chr(97 + i % 26) * size,  # ASCII
}
COUNT = 4000
SIZE = 100


def traced(action: Callable[[int], object]) -> float:
    """Bytes allocated per call of ``action(i)`` for ``COUNT`` calls, as tracemalloc sees it."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(COUNT):
            action(i)
        return (tracemalloc.get_traced_memory()[0] - before) / COUNT
    finally:
        if not tracing:
            tracemalloc.stop()


def queued_cost(kind: str) -> float:
    """What one queued message costs beyond its payload bytes."""
    scheduler: Scheduler[Payload] = Scheduler(ROOMY)
    scheduler.open_stream(1, 0.0, StreamOptions(limit=1 << 40))
    make = MAKERS[kind]
    for i in range(300):  # sequence numbers past the small ints CPython shares
        scheduler.enqueue(1, make(i, SIZE), SIZE, 0.0)
    return traced(lambda i: scheduler.enqueue(1, make(i, SIZE), SIZE, 0.0)) - SIZE


def replay_cost(kind: str) -> float:
    """What one replay entry costs beyond its payload bytes, once nothing else holds it."""
    buffer: ReplayBuffer[Payload] = ReplayBuffer(1, max_messages=1 << 30, max_bytes=1 << 40)
    make = MAKERS[kind]
    return traced(lambda i: buffer.append(1000 + i, make(i, SIZE), SIZE)) - SIZE


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's object sizes")
@pytest.mark.parametrize(
    ("cost", "constant"), [(queued_cost, MESSAGE_OVERHEAD), (replay_cost, ENTRY_OVERHEAD)]
)
def test_the_overhead_is_what_a_message_costs(cost: Callable[[str], float], constant: int) -> None:
    costs = {kind: cost(kind) for kind in MAKERS}
    # Enough for bytes and ASCII text, and not much more than the dearer of the two.
    assert all(value <= constant for value in costs.values()), costs
    assert max(costs.values()) >= constant * 0.75, costs
    assert costs["bytes"] < costs["str"], costs  # a str's header is the bigger one


# --- the overhead is charged ----------------------------------------------------------------


def test_charged_bytes_are_sizes_plus_the_overhead_per_message() -> None:
    scheduler: Scheduler[str] = Scheduler(ROOMY)
    scheduler.open_stream(1, 0.0)
    scheduler.open_stream(2, 0.0)
    scheduler.enqueue(1, "a", 10, 0.0)
    scheduler.enqueue_many(1, ["b", "c"], [0, 5], 0.0)
    scheduler.enqueue(2, "d", 7, 0.0)
    assert scheduler.queued_bytes(1) == 15  # payload bytes, as given
    assert scheduler.charged_bytes(1) == 15 + 3 * MESSAGE_OVERHEAD
    assert scheduler.charged_bytes() == 22 + 4 * MESSAGE_OVERHEAD
    scheduler.set_in_flight(100)
    assert scheduler.in_flight_bytes == 100
    assert scheduler.buffered_bytes == 122  # payload bytes plus in flight
    assert scheduler.charged_bytes() == 22 + 4 * MESSAGE_OVERHEAD  # the queues only
    batch = scheduler.take(0.0)
    assert len(batch) == 4
    assert scheduler.charged_bytes() == scheduler.charged_bytes(1) == 0


def test_a_negative_overhead_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="overhead"):
        Scheduler(ROOMY, message_overhead=-1)
    with pytest.raises(LocalProtocolError, match="overhead"):
        Budget(ROOMY, -1)


def test_a_pause_stream_is_refused_when_the_overhead_would_pass_the_budget() -> None:
    config = SchedulerConfig(high_watermark=100, low_watermark=0, max_buffered=100)
    scheduler: Scheduler[str] = Scheduler(config, message_overhead=30)
    scheduler.open_stream(1, 0.0, StreamOptions(limit=100))
    assert scheduler.enqueue(1, "a", 40, 0.0) == 1  # 70 charged
    with pytest.raises(LocalProtocolError, match=r"\(\+30 per message\)"):
        scheduler.enqueue(1, "b", 1, 0.0)  # 31 more: 101
    assert scheduler.enqueue(1, "b", 0, 0.0) == 2  # 30 more: exactly 100
    # A list whose sizes fit but whose overhead does not goes one by one, and stops there.
    scheduler.take(0.0)
    with pytest.raises(LocalProtocolError, match="connection budget"):
        scheduler.enqueue_many(1, ["c", "d", "e"], [10, 10, 10], 0.0)
    assert scheduler.charged_bytes(1) == 2 * (10 + 30)


@given(limit=st.integers(1, 3000), overhead=OVERHEADS)
def test_a_drop_oldest_stream_of_one_byte_messages_holds_its_share(
    limit: int, overhead: int
) -> None:
    """N one-byte messages fill a share at limit / (1 + overhead) messages, not at limit."""
    scheduler: Scheduler[str] = Scheduler(ROOMY, message_overhead=overhead)
    scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.DROP_OLDEST, limit=limit))
    held = max(1, limit // (1 + overhead))  # (an empty queue takes any message)
    sent = held + 3
    for n in range(sent):
        assert scheduler.enqueue(1, f"m{n}", 1, 0.0) == n + 1
        assert scheduler.metrics(1).drops == max(0, n + 1 - held)
    assert scheduler.queued_bytes(1) == held
    assert scheduler.charged_bytes(1) == held * (1 + overhead)
    assert scheduler.charged_bytes(1) <= limit or held == 1
    assert [item.payload for item in scheduler.take(0.0)] == [
        f"m{n}" for n in range(sent - held, sent)
    ]


@given(limit=st.integers(1, 3000), overhead=OVERHEADS)
def test_a_pause_stream_of_one_byte_messages_pauses_past_its_share(
    limit: int, overhead: int
) -> None:
    scheduler: Scheduler[str] = Scheduler(ROOMY, message_overhead=overhead)
    scheduler.open_stream(1, 0.0, StreamOptions(limit=limit))
    fits = limit // (1 + overhead)  # messages within the share
    for n in range(fits):
        scheduler.enqueue(1, "x", 1, 0.0)
        assert scheduler.next_event() is None, n
    scheduler.enqueue(1, "x", 1, 0.0)
    assert scheduler.next_event() == StreamPaused(1)
    assert scheduler.is_paused(1)


@given(limit=st.integers(1, 3000), overhead=OVERHEADS)
def test_a_disconnect_stream_of_one_byte_messages_is_over_past_its_share(
    limit: int, overhead: int
) -> None:
    scheduler: Scheduler[str] = Scheduler(ROOMY, message_overhead=overhead)
    scheduler.open_stream(1, 0.0, StreamOptions(policy=Policy.DISCONNECT, limit=limit, grace=1))
    for _ in range(limit // (1 + overhead)):
        scheduler.enqueue(1, "x", 1, 0.0)
    assert scheduler.next_deadline() is None  # within its share: no grace clock
    scheduler.enqueue(1, "x", 1, 0.0)
    assert scheduler.next_deadline() == 1.0


# --- the hard budget holds, overhead included ---------------------------------------------

POLICIES = st.sampled_from([Policy.PAUSE, Policy.DROP_OLDEST, Policy.LATEST, Policy.DISCONNECT])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 3), st.integers(0, 1500), st.integers(1, 40)),
        st.tuples(st.just("many"), st.integers(0, 3), st.integers(0, 600), st.integers(1, 40)),
        st.tuples(st.just("take"), st.integers(0, 3), st.integers(0, 4000), st.just(0)),
    ),
    max_size=60,
)


@given(
    policies=st.lists(POLICIES, min_size=4, max_size=4),
    limits=st.lists(st.none() | st.integers(1, 8000), min_size=4, max_size=4),
    max_buffered=st.integers(1, 12_000),
    steps=STEPS,
)
def test_the_charged_total_never_passes_the_budget(
    policies: list[Policy],
    limits: list[int | None],
    max_buffered: int,
    steps: list[tuple[str, int, int, int]],
) -> None:
    """With the real overhead: after every enqueue that does not raise, the queued messages
    with their overhead plus the bytes in flight are within ``max_buffered``."""
    config = SchedulerConfig(
        max_buffered=max_buffered, high_watermark=max_buffered, low_watermark=max_buffered // 4
    )
    scheduler: Scheduler[str] = Scheduler(config)
    for sid, (policy, limit) in enumerate(zip(policies, limits, strict=True)):
        scheduler.open_stream(
            sid, 0.0, StreamOptions(priority=Priority.INTERACTIVE, policy=policy, limit=limit)
        )
    for op, sid, size, count in steps:
        if op == "take":
            taken = sum(item.size for item in scheduler.take(0.0))
            # The transport holds at most what it was given (taking only moves bytes).
            scheduler.set_in_flight(min(size, scheduler.in_flight_bytes + taken))
        else:
            try:
                if op == "send":
                    key = count if policies[sid] is Policy.LATEST else None
                    scheduler.enqueue(sid, "m", size, 0.0, key=key)
                elif policies[sid] is not Policy.LATEST:
                    scheduler.enqueue_many(sid, ["m"] * count, [size] * count, 0.0)
            except LocalProtocolError:
                assert policies[sid] is Policy.PAUSE
        items = scheduler.queued_items()
        charged = sum(item.size for item in items) + MESSAGE_OVERHEAD * len(items)
        assert scheduler.charged_bytes() == charged
        assert charged + scheduler.in_flight_bytes <= max_buffered
