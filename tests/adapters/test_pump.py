"""The pump (adapters/_pump.py) on a fake transport: when a wake writes in place, and when not.

A wake on an idle connection writes what the core releases at once, before the loop runs
again; inside a step (while the application handles an event) it writes nothing itself and
schedules nothing, since the step's own loop writes. The application is never re-entered from
its own ``wake()``: events raised by the write in place wait for the step that follows.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from diaproto.adapters._pump import Pump, now
from diaproto.config import ConnectionConfig, SchedulerConfig, Timeouts
from diaproto.events import ConnectionClosed, Event, StreamPaused, StreamResumed, WebSocketRequest
from diaproto.runtime import Cancellable
from diaproto.scheduler import Policy, Priority
from diaproto.server import ServerConnection

QUIET = Timeouts(idle=None, ping_interval=None, ping_timeout=None, sse_heartbeat=None)
CONFIG = ConnectionConfig(timeouts=QUIET)
#: No linger: every message is due at once.
NO_LINGER = ConnectionConfig(timeouts=QUIET, scheduler=SchedulerConfig(linger=0.0))
#: No linger and a 16-byte share, for pausing with a few bytes.
SMALL = ConnectionConfig(
    timeouts=QUIET,
    scheduler=SchedulerConfig(linger=0.0, high_watermark=16, low_watermark=8, max_buffered=1024),
)
DATA = 1


@dataclass
class FakeTransport:
    """Holds nothing unless told to; records every write."""

    writes: list[bytes] = field(default_factory=list)
    holding: int = 0
    is_closed: bool = False
    on_write: Callable[[], None] | None = None  # e.g. the peer is found gone
    asked: int = 0  # calls of held(): every step asks

    @property
    def closed(self) -> bool:
        return self.is_closed

    def held(self) -> int:
        self.asked += 1
        return self.holding

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        if self.on_write is not None:
            self.on_write()

    def set_reading(self, wanted: bool) -> None:
        pass

    def close(self) -> None:
        self.is_closed = True

    def abort(self) -> None:
        self.is_closed = True


class NoTimer:
    def cancel(self) -> None:
        pass


#: Keepalive on, so the connection always has a deadline for its timer.
PINGING = ConnectionConfig(
    timeouts=Timeouts(idle=None, ping_interval=5.0, ping_timeout=5.0, sse_heartbeat=None)
)


@dataclass
class Session:
    conn: ServerConnection
    peer: str = "test"
    runtime: object = None

    def wake(self) -> None:  # pragma: no cover - the tests wake the pump itself
        raise AssertionError("not used")


@dataclass
class Recorder:
    """Accepts the WebSocket, opens DATA; records events; can send while handling one."""

    events: list[Event] = field(default_factory=list)
    on_event: Callable[[ServerConnection, Event], None] | None = None

    def handle_event(self, session: Session, event: Event) -> None:
        self.events.append(event)
        conn = session.conn
        if isinstance(event, WebSocketRequest):
            conn.accept_websocket(None, now=now())
            conn.open_stream(DATA, now(), priority=Priority.STREAM, policy=Policy.PAUSE)
        if self.on_event is not None:
            self.on_event(conn, event)

    def shutdown(self) -> None:
        pass


@dataclass
class Rig:
    pump: Pump
    transport: FakeTransport
    app: Recorder
    soon: list[Callable[[], None]]
    timers: list[float]  # the delays call_later was given

    def run_soon(self) -> None:
        callbacks, self.soon[:] = list(self.soon), []
        for callback in callbacks:
            callback()


def upgraded(config: ConnectionConfig = CONFIG) -> Rig:
    """A pump whose connection has accepted a WebSocket; ``soon`` callbacks are held back."""
    app = Recorder()
    conn = ServerConnection(now(), config)
    transport = FakeTransport()
    soon: list[Callable[[], None]] = []

    timers: list[float] = []

    def call_later(delay: float, callback: Callable[[], None]) -> Cancellable:
        timers.append(delay)
        return NoTimer()

    pump = Pump(app, Session(conn), transport, soon.append, call_later)  # type: ignore[arg-type]
    key = base64.b64encode(os.urandom(16)).decode()
    conn.receive_data(
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
        now(),
    )
    pump.step()
    assert transport.writes and transport.writes[0].startswith(b"HTTP/1.1 101")
    transport.writes.clear()
    return Rig(pump, transport, app, soon, timers)


def test_a_wake_on_an_idle_connection_writes_before_the_loop_runs_again() -> None:
    rig = upgraded()
    rig.pump.conn.send(DATA, b"chunk", now())
    rig.pump.wake()
    # Written in place: the frame is out although no scheduled callback has run.
    assert rig.transport.writes == [b"\x82\x05chunk"]
    # The step still follows (events, timer), once however many wakes come first.
    rig.pump.wake()
    assert len(rig.soon) == 1
    rig.run_soon()
    assert rig.transport.writes == [b"\x82\x05chunk"]  # nothing written twice


def test_later_sends_before_the_step_leave_together_in_the_step() -> None:
    rig = upgraded(SMALL)
    rig.pump.conn.send(DATA, b"a", now())
    rig.pump.wake()
    rig.pump.conn.send(DATA, b"b", now())
    rig.pump.conn.send(DATA, b"c", now())
    rig.pump.wake()  # a step is already scheduled: no second write in place
    assert rig.transport.writes == [b"\x82\x01a"]
    rig.run_soon()
    assert b"".join(rig.transport.writes) == b"\x82\x01a\x82\x01b\x82\x01c"


def test_a_transport_holding_bytes_gets_nothing_in_place() -> None:
    rig = upgraded(NO_LINGER)
    rig.transport.holding = 10  # the peer will not take what is written next
    rig.pump.conn.send(DATA, b"first", now())
    rig.pump.wake()
    assert rig.transport.writes == [b"\x82\x05first"]
    assert rig.pump.conn.transport_buffered == 10  # reported after the write
    rig.run_soon()
    rig.transport.writes.clear()
    rig.pump.conn.send(DATA, b"chunk", now())
    rig.pump.wake()
    assert rig.transport.writes == []
    rig.run_soon()
    assert rig.transport.writes == []  # its drain steps; the core keeps the message
    rig.transport.holding = 0
    rig.pump.step()  # the drain
    assert rig.transport.writes == [b"\x82\x05chunk"]


def test_a_closed_transport_gets_nothing_in_place() -> None:
    rig = upgraded()
    rig.transport.is_closed = True
    rig.pump.conn.send(DATA, b"chunk", now())
    rig.pump.wake()
    assert rig.transport.writes == []


def test_a_wake_while_an_event_is_handled_leaves_the_write_to_the_step() -> None:
    written_during_handler: list[int] = []
    rig = upgraded()

    def echo(conn: ServerConnection, event: Event) -> None:
        if type(event).__name__ == "WebSocketMessage":
            conn.send(DATA, b"echo", now())
            rig.pump.wake()
            written_during_handler.append(len(rig.transport.writes))

    rig.app.on_event = echo
    masked = bytes(b ^ m for b, m in zip(b"hi", b"\x01\x02\x03\x04", strict=False))
    rig.pump.conn.receive_data(b"\x81\x82\x01\x02\x03\x04" + masked, now())
    rig.pump.step()
    assert written_during_handler == [0]  # not re-entered: nothing written inside the handler
    assert rig.soon == []  # and no extra step scheduled: this step's loop wrote it
    assert rig.transport.writes == [b"\x82\x04echo"]


def test_events_raised_by_a_write_in_place_wait_for_the_step() -> None:
    rig = upgraded(SMALL)
    conn = rig.pump.conn
    rig.transport.holding = 1  # the peer is slow: what is written stays in the transport
    conn.send(DATA, b"12345678", now())
    rig.pump.wake()
    rig.run_soon()
    for _ in range(3):
        conn.send(DATA, b"12345678", now())
    rig.pump.step()
    assert isinstance(rig.app.events[-1], StreamPaused)  # the producer is paused
    rig.app.events.clear()
    rig.transport.writes.clear()
    rig.transport.holding = 0
    rig.pump.wake()  # the write in place takes the queue, which resumes the producer ...
    assert b"".join(rig.transport.writes) == b"\x82\x0812345678" * 3
    assert not any(isinstance(e, StreamResumed) for e in rig.app.events)  # ... not inside wake()
    rig.run_soon()
    assert isinstance(rig.app.events[-1], StreamResumed)


@pytest.mark.parametrize("closes", [True, False], ids=["transport-closed", "transport-open"])
def test_a_connection_lost_by_a_write_in_place_is_reported_by_the_step(closes: bool) -> None:
    rig = upgraded()

    def gone() -> None:
        # As the sockets and tornado transports do on a failed write; the sockets one stays
        # open (its close comes from the step), so only the core knows the peer is gone.
        rig.transport.is_closed = closes
        rig.pump.lost()

    rig.transport.on_write = gone
    rig.pump.conn.send(DATA, b"chunk", now())
    seen = len(rig.app.events)
    rig.pump.wake()
    assert len(rig.app.events) == seen  # not re-entered from its own wake()
    rig.run_soon()
    assert isinstance(rig.app.events[-1], ConnectionClosed)


def test_a_write_in_place_that_leaves_the_core_quiet_needs_no_step() -> None:
    rig = upgraded(PINGING)
    rig.pump.timer.cancel()  # as if it had fired: the write in place must arm it again
    rig.timers.clear()
    rig.pump.conn.send(DATA, b"chunk", now())
    rig.pump.wake()
    assert rig.transport.writes == [b"\x82\x05chunk"]
    assert len(rig.timers) == 1 and 0.0 < rig.timers[0] <= 5.0  # the keepalive deadline
    asked = rig.transport.asked
    rig.run_soon()  # the callback that coalesces later wakes: none came, so no step
    assert rig.transport.asked == asked
    assert rig.transport.writes == [b"\x82\x05chunk"]


def test_a_wake_after_a_quiet_write_in_place_gets_its_step() -> None:
    rig = upgraded(NO_LINGER)
    rig.pump.conn.send(DATA, b"a", now())
    rig.pump.wake()
    assert rig.pump.conn.quiet and rig.soon == [rig.pump._settle]  # no step scheduled
    rig.pump.conn.send(DATA, b"b", now())
    rig.pump.wake()  # coalesced: the callback already scheduled must now step
    assert rig.transport.writes == [b"\x82\x01a"]
    rig.run_soon()
    assert rig.transport.writes == [b"\x82\x01a", b"\x82\x01b"]
    rig.pump.conn.send(DATA, b"c", now())
    rig.pump.wake()  # and the next wake is a first one again: in place
    assert rig.transport.writes[-1] == b"\x82\x01c"
