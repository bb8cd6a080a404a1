"""Corners of ServerConnection that the larger suites do not walk into by themselves."""

from __future__ import annotations

from diaproto import ConnectionClosed, Policy, SchedulerConfig, SlowConsumer, State
from diaproto.config import ConnectionConfig
from diaproto.testing import sse_pair


def test_slow_consumer_verdict_after_the_application_closed_reports_close_once() -> None:
    config = ConnectionConfig(
        scheduler=SchedulerConfig(high_watermark=64, low_watermark=16, max_buffered=128)
    )
    loop = sse_pair(server_config=config)
    server, now = loop.server, loop.clock.now
    loop.take_server_events()
    server.open_stream(1, now, policy=Policy.DISCONNECT)
    server.set_transport_buffered(10_000)  # the window is shut: everything stays queued
    for _ in range(4):
        server.send(1, b"x" * 40, now)  # the fourth passes the hard budget: slow at once
    server.close(now)
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    assert server.state is State.CLOSED
    assert [type(e) for e in events].count(ConnectionClosed) == 1
    assert any(isinstance(e, SlowConsumer) and e.stream_id == 1 for e in events)
