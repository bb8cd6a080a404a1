"""Helpers of the scheduler tests: a scheduler with roomy defaults, and what it hands out,
read back."""

from __future__ import annotations

from diaproto.config import SchedulerConfig
from diaproto.events import Event, StreamFinished
from diaproto.metrics import StreamMetrics
from diaproto.scheduler import Outgoing, Scheduler


def drain_events(scheduler: Scheduler[str]) -> list[Event]:
    events: list[Event] = []
    while (event := scheduler.next_event()) is not None:
        events.append(event)
    return events


def payloads(batch: list[Outgoing[str]]) -> list[str]:
    return [item.payload for item in batch]


def make(*, message_overhead: int = 0, **config: float) -> Scheduler[str]:
    """A scheduler with roomy defaults for examples; override what the test is about.

    The examples count payload bytes only (no per-message overhead), so their figures read
    as sums of sizes; the overhead has its own tests (``test_overhead.py``), and the
    stateful model draws one."""
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
        ),
        message_overhead=message_overhead,
    )


def finished(stream_id: int) -> StreamFinished:
    """For comparisons: StreamFinished compares by stream id only (metrics are not compared)."""
    return StreamFinished(stream_id, StreamMetrics(opened_at=0.0))
