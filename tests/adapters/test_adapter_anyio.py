"""The anyio adapter's own parts, on asyncio and trio: every ``call_later`` of a server in one
heap served by one task (in order, cancellable, woken by an earlier timer, not stopped by a
failing callback, its memory bounded by cancelled timers). What every runtime must do is in
the conformance suite of tests/adapters."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import pytest

from diaproto.adapters.anyio import _Timers

BACKENDS = ["asyncio", "trio"]
LIMIT = 30.0  # seconds a condition may take on a loaded machine (never how fast it is)


def run_with_timers(backend: str, body: Callable[[_Timers], Awaitable[None]]) -> None:
    async def main() -> None:
        timers = _Timers()
        async with anyio.create_task_group() as tg:
            tg.start_soon(timers.run)
            with anyio.fail_after(LIMIT):
                await body(timers)
            tg.cancel_scope.cancel()

    anyio.run(main, backend=backend)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await anyio.sleep(0.001)


@pytest.mark.parametrize("backend", BACKENDS)
def test_timers_fire_in_order_and_a_cancelled_one_never(backend: str) -> None:
    fired: list[str] = []

    async def body(timers: _Timers) -> None:
        for name, delay in [("c", 0.03), ("a", 0.01), ("b", 0.02), ("a2", 0.01)]:
            timers.add(delay, partial(fired.append, name))
        timers.add(0.015, lambda: fired.append("cancelled")).cancel()
        await until(lambda: len(fired) == 4)
        await anyio.sleep(0.05)

    run_with_timers(backend, body)
    assert fired == ["a", "a2", "b", "c"]  # by deadline, ties in the order armed


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_earlier_timer_wakes_the_sleeping_task(backend: str) -> None:
    fired: list[str] = []

    async def body(timers: _Timers) -> None:
        timers.add(1000.0, lambda: fired.append("late"))
        await anyio.sleep(0.01)  # the task now sleeps until the late one
        timers.add(0.0, lambda: fired.append("soon"))
        await until(lambda: fired == ["soon"])

    run_with_timers(backend, body)
    assert fired == ["soon"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_callback_is_logged_and_the_rest_still_fire(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    fired: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    async def body(timers: _Timers) -> None:
        timers.add(0.0, fail)
        timers.add(0.01, lambda: fired.append("after"))
        await until(lambda: fired == ["after"])

    with caplog.at_level(logging.ERROR, logger="diaproto.adapters.anyio"):
        run_with_timers(backend, body)
    assert "a call_later callback failed" in caplog.text


def test_cancelled_timers_do_not_pile_up() -> None:
    async def body(timers: _Timers) -> None:
        armed = [timers.add(1000.0, lambda: None) for _ in range(600)]
        for timer in armed[:500]:
            timer.cancel()
            timer.cancel()  # twice counts once
        timers.add(1000.0, lambda: None)
        assert len(timers._heap) == 101  # rebuilt once cancelled ones were most of it
        assert timers.cancelled == 0

    run_with_timers("asyncio", body)
