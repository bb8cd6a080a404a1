"""Scheduler.enqueue_many and ServerConnection.send_many: the same as one call per message."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto.config import ConnectionConfig, SchedulerConfig
from diaproto.errors import LocalProtocolError
from diaproto.events import Event, StreamPaused, WebSocketMessage
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Policy, Priority, Scheduler, StreamOptions
from diaproto.sse import SseEvent
from diaproto.testing import sse_pair, websocket_pair

CONFIG = SchedulerConfig(
    max_buffered=3000, high_watermark=1500, low_watermark=300, batch_bytes=700, linger=0.0
)


def outcome(call: Callable[[], int | None]) -> int | str | None:
    try:
        return call()
    except LocalProtocolError as exc:
        return f"raised: {exc}"


def drain(scheduler: Scheduler[str]) -> list[Event]:
    events = []
    while (event := scheduler.next_event()) is not None:
        events.append(event)
    return events


def snapshot(scheduler: Scheduler[str]) -> tuple[object, ...]:
    queued = [(o.stream_id, o.seq, o.payload, o.size) for o in scheduler.queued_items()]
    stream = scheduler.has_stream(1)
    return (
        queued,
        scheduler.queued_bytes(),
        scheduler.charged_bytes(),
        scheduler.is_paused(1) if stream else None,
        scheduler.last_seq(1) if stream else None,
        scheduler.metrics(1) if stream else None,
        drain(scheduler),
    )


@given(
    policy=st.sampled_from([Policy.PAUSE, Policy.DROP_OLDEST, Policy.DISCONNECT]),
    priority=st.sampled_from([Priority.INTERACTIVE, Priority.STREAM]),
    prefill=st.lists(st.integers(0, 300), max_size=3),  # with in_flight: under the budget
    sizes=st.lists(st.integers(-1, 600), max_size=12),
    credit=st.none() | st.integers(0, 50),
    replay=st.sampled_from([None, True, False]),
    finishing=st.booleans(),
    in_flight=st.integers(0, 1500),
)
def test_enqueue_many_is_enqueue_one_by_one(
    *,
    policy: Policy,
    priority: Priority,
    prefill: list[int],
    sizes: list[int],
    credit: int | None,
    replay: bool | None,
    finishing: bool,
    in_flight: int,
) -> None:
    batched: Scheduler[str] = Scheduler(CONFIG)
    single: Scheduler[str] = Scheduler(CONFIG)
    payloads = [f"m{i}" for i in range(len(sizes))]
    for scheduler in (batched, single):
        buffer = None if replay is None else ReplayBuffer[str](1)
        scheduler.open_stream(
            1,
            0.0,
            StreamOptions(
                priority=priority,
                policy=policy,
                credit=credit,
                limit=900,
                replay=buffer,
                record=bool(replay),
            ),
        )
        scheduler.set_in_flight(in_flight)
        for i, size in enumerate(prefill):
            scheduler.enqueue(1, f"p{i}", size, 0.0)
        if finishing:
            scheduler.finish_stream(1)

    def one_by_one() -> int | None:
        seq = None
        for payload, size in zip(payloads, sizes, strict=True):
            seq = single.enqueue(1, payload, size, 1.0)
        return seq

    assert outcome(lambda: batched.enqueue_many(1, payloads, sizes, 1.0)) == outcome(one_by_one)
    assert snapshot(batched) == snapshot(single)
    assert [o.payload for o in batched.take(2.0)] == [o.payload for o in single.take(2.0)]
    assert snapshot(batched) == snapshot(single)


def test_a_lossless_batch_pauses_once() -> None:
    scheduler: Scheduler[str] = Scheduler(CONFIG)
    scheduler.open_stream(1, 0.0, StreamOptions(priority=Priority.INTERACTIVE, limit=100))
    assert scheduler.enqueue_many(1, ["a", "b", "c"], [60, 60, 60], 0.0) == 3
    assert drain(scheduler) == [StreamPaused(1)]
    assert scheduler.queued_bytes(1) == 180
    assert scheduler.enqueue_many(1, [], [], 0.0) is None


def test_send_many_on_a_websocket() -> None:
    loop = websocket_pair(offer=(), accept=None)
    loop.server.open_stream(1, loop.clock.now)
    assert loop.server.send_many(1, [b"one", "two", b"three"], loop.clock.now) == 3
    loop.advance(0.01)
    messages = [e.data for e in loop.take_client_events() if isinstance(e, WebSocketMessage)]
    assert messages == [b"one", "two", b"three"]


def test_send_many_checks_every_payload_first() -> None:
    loop = websocket_pair()  # diaproto.v1: data chunks only
    loop.server.open_stream(1, loop.clock.now)
    with pytest.raises(LocalProtocolError, match="data chunks"):
        loop.server.send_many(1, [b"ok", "text"], loop.clock.now)
    assert loop.server.scheduler.queued_bytes(1) == 0
    sse = sse_pair(server_config=ConnectionConfig())
    sse.server.open_stream(1, sse.clock.now)
    assert sse.server.send_many(1, [SseEvent(data="x"), "y"], sse.clock.now) == 2
    sse.server.close(sse.clock.now)
    with pytest.raises(LocalProtocolError, match="no open stream"):
        sse.server.send_many(1, [b"late"], sse.clock.now)


def test_a_batch_is_recorded_for_replay() -> None:
    scheduler: Scheduler[str] = Scheduler(CONFIG)
    replay = ReplayBuffer[str](1)
    scheduler.open_stream(1, 0.0, StreamOptions(replay=replay))
    assert scheduler.enqueue_many(1, ["a", "b"], [1, 1], 0.0) == 2
    assert [(e.seq, e.payload) for e in replay.since(0)] == [(1, "a"), (2, "b")]
