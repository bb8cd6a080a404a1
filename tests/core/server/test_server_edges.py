"""Corners of ServerConnection that the larger suites do not walk into by themselves."""

from __future__ import annotations

from diaproto import (
    ConnectionClosed,
    Policy,
    RemoteError,
    SchedulerConfig,
    ServerConnection,
    SlowConsumer,
    State,
    StreamFinished,
)
from diaproto.config import ConnectionConfig, Timeouts
from diaproto.events import Event
from diaproto.testing import sse_pair, websocket_pair


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


def test_a_bad_body_on_a_head_request_gets_an_error_head_without_a_body() -> None:
    # Found by the atheris engine: the 400 answer must not carry a body after a HEAD.
    server = ServerConnection(0.0)
    server.receive_data(
        b"HEAD /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ncba\n\r0\r", 0.0
    )
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    assert isinstance(events[0], RemoteError)
    assert events[0].error.http_status == 400
    out = server.data_to_send(0.0)
    assert out.startswith(b"HTTP/1.1 400 ")
    assert out.endswith(b"\r\n\r\n")  # the head only
    assert server.finished


def test_connection_closed_is_the_last_event_after_every_stream_finished() -> None:
    loop = sse_pair()
    server, now = loop.server, loop.clock.now
    loop.take_server_events()
    server.open_stream(1, now)
    server.open_stream(2, now)
    server.set_transport_buffered(10**6)  # the window is shut: both keep data queued
    server.send(1, b"one", now)
    server.send(2, b"two", now)
    server.receive_eof(now)  # the client vanishes mid-stream
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    finished = sorted(e.stream_id for e in events if isinstance(e, StreamFinished))
    assert finished == [1, 2]
    assert isinstance(events[-1], ConnectionClosed)
    assert sum(isinstance(e, ConnectionClosed) for e in events) == 1


def _huge_binary_frame_header(length: int = 2**31) -> bytes:
    # FIN + binary, masked, 64-bit length, then the mask key; no payload follows.
    return bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big") + b"\x01\x02\x03\x04"


def test_a_frame_header_declaring_2_gib_is_refused_with_1009_before_any_payload() -> None:
    loop = websocket_pair()
    server = loop.server
    loop.take_server_events()
    server.receive_data(_huge_binary_frame_header(), loop.clock.now)
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    assert isinstance(events[0], RemoteError) and events[0].error.close_code == 1009
    assert isinstance(events[-1], ConnectionClosed) and events[-1].code == 1009
    out = server.data_to_send(loop.clock.now)
    assert out[0] == 0x88  # FIN + close
    assert int.from_bytes(out[2:4], "big") == 1009
    assert server.finished


def test_a_big_header_while_closing_is_left_to_the_close_handshake() -> None:
    loop = websocket_pair()
    server = loop.server
    loop.take_server_events()
    server.close(loop.clock.now)  # our close frame is out: CLOSING
    server.data_to_send(loop.clock.now)
    server.receive_data(_huge_binary_frame_header(), loop.clock.now)
    while server.next_event() is not None:
        pass
    assert server.state is State.CLOSING  # no second close; the close timeout ends it


# --- the write timeout: a peer that stops reading (issue 12) ---------------------------------

QUIET = Timeouts(
    handshake=None, idle=None, ping_interval=None, ping_timeout=None, sse_heartbeat=None
)


def _drain_events(server: ServerConnection) -> list[Event]:
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    return events


def test_write_timeout_runs_only_while_the_transport_holds_bytes_the_peer_does_not_take() -> None:
    loop = sse_pair(server_config=ConnectionConfig(timeouts=QUIET))
    server = loop.server
    loop.take_server_events()
    server.open_stream(1, 1.0)
    server.send(1, b"x" * 100, 1.0)
    assert server.data_to_send(1.0)
    assert server.next_deadline() is None  # nothing held: a quiet connection has no timer
    server.set_transport_buffered(100, now=1.0)  # the write did not all go
    assert server.next_deadline() == 31.0  # the default write timeout, 30 s
    server.set_transport_buffered(100, now=20.0)  # the same count again: no progress
    assert server.next_deadline() == 31.0
    server.set_transport_buffered(40, now=20.0)  # the peer took some: the timer restarts
    assert server.next_deadline() == 50.0
    server.handle_timer(49.9)
    assert not server.finished
    server.handle_timer(50.0)
    assert server.finished
    assert server.flush_deadline == 50.0  # abort at once: nothing would reach the peer
    closed = [e for e in _drain_events(server) if isinstance(e, ConnectionClosed)]
    assert closed == [ConnectionClosed(None, "the peer stopped reading")]


def test_write_timeout_clears_when_the_transport_drains() -> None:
    loop = sse_pair(server_config=ConnectionConfig(timeouts=QUIET))
    server = loop.server
    server.set_transport_buffered(100, now=1.0)
    server.set_transport_buffered(0, now=2.0)
    assert server.next_deadline() is None
    server.handle_timer(100.0)
    assert not server.finished


def test_write_timeout_drops_a_websocket_with_1006() -> None:
    timeouts = Timeouts(ping_interval=None, ping_timeout=None, idle=None, write_timeout=2.0)
    loop = websocket_pair(server_config=ConnectionConfig(timeouts=timeouts))
    server = loop.server
    loop.take_server_events()
    server.set_transport_buffered(5000, now=1.0)
    assert server.next_deadline() == 3.0
    server.handle_timer(3.0)
    assert server.finished
    assert server.data_to_send(3.0) == b""  # no close frame: it could not reach the peer
    closed = [e for e in _drain_events(server) if isinstance(e, ConnectionClosed)]
    assert closed == [ConnectionClosed(1006, "the peer stopped reading")]


def test_no_linger_deadline_while_the_transport_holds_bytes() -> None:
    """A linger deadline cannot be cleared while the adapter takes nothing; reported, it
    would stay due (an adapter would spin, or arm no timer and miss the write timeout)."""
    loop = sse_pair(server_config=ConnectionConfig(timeouts=QUIET))
    server = loop.server
    loop.take_server_events()
    server.open_stream(1, 1.0)
    server.send(1, b"a", 1.0)
    assert server.data_to_send(1.0)
    server.send(1, b"b", 1.0)  # a recent write: this one lingers for company
    assert server.next_deadline() == 1.0 + server.config.scheduler.linger
    server.set_transport_buffered(10, now=1.0)
    assert server.next_deadline() == 31.0


def test_flush_deadline_after_a_close_is_the_close_timeout() -> None:
    loop = sse_pair(server_config=ConnectionConfig(timeouts=QUIET))
    server = loop.server
    assert server.flush_deadline is None
    server.close(7.0)
    assert server.finished
    assert server.flush_deadline == 7.0 + 5.0


def test_close_handshake_timeout_aborts_instead_of_flushing() -> None:
    timeouts = Timeouts(ping_interval=None, ping_timeout=None, idle=None, close_timeout=1.0)
    loop = websocket_pair(server_config=ConnectionConfig(timeouts=timeouts))
    server = loop.server
    server.close(2.0, 1001, "going away")
    server.data_to_send(2.0)
    server.handle_timer(3.0)
    assert server.finished
    assert server.flush_deadline == 3.0


def test_flush_deadline_falls_back_to_the_write_timeout_and_may_be_disabled() -> None:
    fallback = Timeouts(close_timeout=None, write_timeout=9.0)
    loop = sse_pair(server_config=ConnectionConfig(timeouts=fallback))
    loop.server.close(1.0)
    assert loop.server.flush_deadline == 10.0
    never = Timeouts(close_timeout=None, write_timeout=None)
    loop = sse_pair(server_config=ConnectionConfig(timeouts=never))
    loop.server.close(1.0)
    assert loop.server.flush_deadline is None  # the embedder chose to wait for ever
