"""Streams over a WebSocket with diaproto.v1: open, data and end on the wire, failing,
cancelling and resuming streams, credit, priorities and backpressure."""

from __future__ import annotations

import pytest
from core_support import NO_HEARTBEAT, QUIET, closed_events, drain
from server_websocket_support import RawClient, state_of
from wsproto.events import BytesMessage, TextMessage

from diaproto.client import WebSocketClientConnection
from diaproto.config import ConnectionConfig, SchedulerConfig
from diaproto.errors import LocalProtocolError
from diaproto.events import (
    ConnectionClosed,
    RemoteError,
    SlowConsumer,
    StreamFinished,
    StreamPaused,
    StreamResumed,
)
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Policy, Priority
from diaproto.server import ServerConnection, State
from diaproto.server.framing import Payload
from diaproto.testing import FakeClock, websocket_pair
from diaproto.wire import (
    CancelStream,
    DataChunk,
    ErrorCode,
    GrantCredit,
    OpenStream,
    ResumeStream,
    StreamEnd,
    StreamError,
    StreamOpened,
    decode_records,
    decode_server_message,
)

# --- diaproto.v1 ---------------------------------------------------------------------------


def test_wire_open_data_end() -> None:
    loop = websocket_pair(server_config=QUIET, client_config=QUIET)
    loop.take_client_events()
    server, now = loop.server, loop.clock.now
    server.open_stream(1, now, token="t-1")
    assert [server.send(1, bytes([i]) * (i + 1), now) for i in range(3)] == [1, 2, 3]
    server.end_stream(1, now)
    loop.advance(0.01)
    assert loop.take_client_events() == [
        StreamOpened(1, "t-1"),
        DataChunk(1, 1, b"\x00"),
        DataChunk(1, 2, b"\x01\x01"),
        DataChunk(1, 3, b"\x02\x02\x02"),
        StreamEnd(1, 3),
    ]
    finished = loop.take_server_events()
    assert [type(e) for e in finished] == [StreamFinished]
    with pytest.raises(LocalProtocolError):
        server.send(1, b"late", loop.clock.now)


def test_wire_send_refuses_text() -> None:
    loop = websocket_pair()
    loop.server.open_stream(1, 0.0)
    with pytest.raises(LocalProtocolError, match="bytes"):
        loop.server.send(1, "text", 0.0)


def test_negative_stream_id_is_refused() -> None:
    loop = websocket_pair()
    with pytest.raises(LocalProtocolError):
        loop.server.open_stream(-1, 0.0)


def test_several_chunks_in_one_binary_message() -> None:
    raw = RawClient(FakeClock())
    server = raw.server
    server.open_stream(1, 0.0)
    server.open_stream(2, 0.0)
    for i in range(3):
        server.send(1, b"one%d" % i, 0.0)
        server.send(2, b"two%d" % i, 0.0)
    received = raw.read()
    texts = [e for e in received if isinstance(e, TextMessage)]
    binaries = [e for e in received if isinstance(e, BytesMessage)]
    assert [decode_server_message(t.data) for t in texts] == [StreamOpened(1), StreamOpened(2)]
    assert len(binaries) == 1  # the whole batch is one message
    records = decode_records(bytes(binaries[0].data))
    assert len(records) == 6
    assert sorted((r.stream_id, r.seq, r.data) for r in records) == [
        (1, 1, b"one0"),
        (1, 2, b"one1"),
        (1, 3, b"one2"),
        (2, 1, b"two0"),
        (2, 2, b"two1"),
        (2, 3, b"two2"),
    ]


def test_fail_stream_drops_queued_data() -> None:
    clock = FakeClock()
    raw = RawClient(clock)
    server = raw.server
    server.open_stream(1, 0.0)
    server.set_transport_buffered(10**6)  # the write window is closed
    assert [type(e) for e in raw.read()] == [TextMessage]  # only the open
    server.send(1, b"queued-1", 0.0)
    server.send(1, b"queued-2", 0.0)
    assert server.scheduler.queued_bytes() == 16
    server.fail_stream(1, ErrorCode.INTERNAL, "model crashed", 0.0)
    assert not server.scheduler.has_stream(1)
    server.set_transport_buffered(0)
    clock.advance(1.0)
    received = raw.read()
    assert len(received) == 1
    assert isinstance(received[0], TextMessage)
    assert decode_server_message(received[0].data) == StreamError(1, "internal", "model crashed")
    assert [type(e) for e in raw.events()] == [StreamFinished]


def test_fail_stream_reaches_the_client_loopback() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    loop.server.fail_stream(None, ErrorCode.INVALID_REQUEST, "", 0.0)
    loop.pump()
    assert loop.take_client_events() == [StreamError(None, "invalid_request")]


def test_cancel_from_client_discards_queued_data() -> None:
    loop = websocket_pair(server_config=QUIET, client_config=QUIET)
    loop.take_client_events()
    server = loop.server
    server.open_stream(4, 0.0)
    loop.pump()
    assert loop.take_client_events() == [StreamOpened(4)]
    server.set_transport_buffered(10**6)
    for _ in range(5):
        server.send(4, b"x" * 100, 0.0)
    loop.pump()
    assert loop.take_client_events() == []
    assert server.scheduler.queued_bytes(4) == 500
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_wire(CancelStream(4), 0.0)
    loop.pump()
    events = loop.take_server_events()
    assert CancelStream(4) in events
    assert [e.stream_id for e in events if isinstance(e, StreamFinished)] == [4]
    assert not server.scheduler.has_stream(4)
    server.set_transport_buffered(0)
    loop.advance(1.0)
    assert loop.take_client_events() == []


def test_open_from_client_reaches_the_application() -> None:
    loop = websocket_pair()
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_wire(OpenStream(7, "hello", voice="S1", credit=10), 0.0)
    loop.pump()
    (event,) = loop.take_server_events()
    assert event == OpenStream(7, "hello", voice="S1", credit=10)


def test_credit_stops_and_resumes_a_stream() -> None:
    loop = websocket_pair(server_config=QUIET, client_config=QUIET)
    loop.take_client_events()
    server = loop.server
    server.open_stream(1, 0.0, credit=4)
    for i in range(4):
        server.send(1, bytes([65 + i]) * 2, 0.0)
    loop.advance(1.0)
    assert loop.take_client_events() == [
        StreamOpened(1),
        DataChunk(1, 1, b"AA"),
        DataChunk(1, 2, b"BB"),
    ]
    assert server.scheduler.credit(1) == 0
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_wire(GrantCredit(1, 2), loop.clock.now)
    loop.advance(1.0)
    # Applied by the core before the application hears of it (so it is never forgotten).
    assert loop.take_server_events() == [GrantCredit(1, 2)]
    assert loop.take_client_events() == [DataChunk(1, 3, b"CC")]
    assert server.scheduler.credit(1) == 0
    loop.client.send_wire(GrantCredit(1, 100), loop.clock.now)
    loop.advance(1.0)
    assert loop.take_client_events() == [DataChunk(1, 4, b"DD")]
    assert server.scheduler.credit(1) == 98


def test_resume_across_two_connections() -> None:
    clock = FakeClock()
    replay: ReplayBuffer[Payload] = ReplayBuffer(1)
    first = websocket_pair(clock, server_config=QUIET, client_config=QUIET)
    first.server.open_stream(1, clock.now, replay=replay, token="r")
    for i in range(1, 5):
        first.server.send(1, b"chunk%d" % i, clock.now)
    first.pump()  # say the client kept only the first two before the transport dropped
    first.server.receive_eof(clock.now)
    assert closed_events(drain(first.server)) == [ConnectionClosed(1006, "")]
    assert replay.last_seq == 4

    clock.advance(3.0)
    second = websocket_pair(clock, server_config=QUIET, client_config=QUIET)
    second.take_client_events()
    assert isinstance(second.client, WebSocketClientConnection)
    second.client.send_wire(ResumeStream(1, after=2, token="r"), clock.now)
    second.pump()
    (resume,) = second.take_server_events()
    assert resume == ResumeStream(1, 2, "r")
    second.server.open_stream(1, clock.now, replay=replay)
    assert second.server.resume_stream(1, resume.after, clock.now) is True
    assert second.server.send(1, b"chunk5", clock.now) == 5
    second.advance(1.0)
    assert second.take_client_events() == [
        StreamOpened(1),
        DataChunk(1, 3, b"chunk3"),
        DataChunk(1, 4, b"chunk4"),
        DataChunk(1, 5, b"chunk5"),
    ]


def test_resume_past_the_window_is_replay_gap() -> None:
    replay: ReplayBuffer[Payload] = ReplayBuffer(2, max_messages=2)
    loop = websocket_pair(server_config=QUIET, client_config=QUIET)
    loop.take_client_events()
    loop.server.open_stream(2, 0.0, replay=replay)
    for i in range(4):
        loop.server.send(2, b"%d" % i, 0.0)
    loop.advance(1.0)
    assert len(loop.take_client_events()) == 5
    assert loop.server.resume_stream(2, 0, loop.clock.now) is False
    loop.pump()
    (error,) = loop.take_client_events()
    assert isinstance(error, StreamError)
    assert (error.stream_id, error.code) == (2, ErrorCode.REPLAY_GAP)
    assert not loop.server.scheduler.has_stream(2)


def test_resume_without_replay_buffer_is_local_error() -> None:
    loop = websocket_pair()
    loop.server.open_stream(1, 0.0)
    with pytest.raises(LocalProtocolError):
        loop.server.resume_stream(1, 0, 0.0)


@pytest.mark.parametrize(
    ("message", "stream_id", "code"),
    [
        ("not json", None, ErrorCode.BAD_MESSAGE),
        ('{"type":"nope","stream":3}', 3, ErrorCode.UNKNOWN_TYPE),
        ('{"type":"open","stream":5,"text":7}', 5, ErrorCode.BAD_MESSAGE),
        ("[1,2]", None, ErrorCode.BAD_MESSAGE),
    ],
)
def test_bad_wire_message_is_answered_and_connection_stays_open(
    message: str, stream_id: int | None, code: str
) -> None:
    loop = websocket_pair()
    loop.take_client_events()
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_message(message, 0.0)
    loop.pump()
    (error,) = loop.take_server_events()
    assert isinstance(error, RemoteError)
    assert error.fatal is False
    (answer,) = loop.take_client_events()
    assert isinstance(answer, StreamError)
    assert (answer.stream_id, answer.code) == (stream_id, code)
    assert state_of(loop.server) is State.WEBSOCKET
    loop.client.send_wire(CancelStream(1), 0.0)
    loop.pump()
    assert loop.take_server_events() == [CancelStream(1)]


def test_binary_from_client_in_wire_mode_is_an_error() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_message(b"\x00\x00\x00\x01", 0.0)
    loop.pump()
    (error,) = loop.take_server_events()
    assert isinstance(error, RemoteError)
    assert not error.fatal
    assert loop.take_client_events() == [
        StreamError(None, ErrorCode.BAD_MESSAGE, "clients send no binary messages in v1")
    ]
    assert state_of(loop.server) is State.WEBSOCKET


# --- priorities, backpressure -------------------------------------------------------------


def test_control_overtakes_queued_bulk_on_the_wire() -> None:
    clock = FakeClock()
    raw = RawClient(clock, config=QUIET)
    server = raw.server
    server.open_stream(1, 0.0, priority=Priority.STREAM)
    chunk = b"b" * 8192
    for _ in range(20):
        server.send(1, chunk, 0.0)
    first = raw.read()
    opened, bulk = first
    assert isinstance(opened, TextMessage)
    assert isinstance(bulk, BytesMessage)
    sent_bulk = decode_records(bytes(bulk.data))
    assert len(sent_bulk) == 8  # one write window's worth, in one message
    server.set_transport_buffered(70_000)  # the client is not reading: the window is closed
    clock.advance(1.0)
    assert raw.read() == []  # bulk is held back
    server.open_stream(2, clock.now)
    server.fail_stream(3, ErrorCode.INTERNAL, "x", clock.now)
    control = raw.read()  # control is not held back by the window
    assert [decode_server_message(e.data) for e in control if isinstance(e, TextMessage)] == [
        StreamOpened(2),
        StreamError(3, "internal", "x"),
    ]
    assert len(control) == 2
    server.set_transport_buffered(0)
    clock.advance(1.0)
    rest = raw.read()
    assert rest
    assert all(isinstance(e, BytesMessage) for e in rest)
    assert isinstance(rest[0], BytesMessage)
    assert decode_records(bytes(rest[0].data))[0].seq == 9  # bulk continues in order


def test_pause_and_resume_events() -> None:
    config = ConnectionConfig(
        timeouts=NO_HEARTBEAT,
        scheduler=SchedulerConfig(high_watermark=1000, low_watermark=500, max_buffered=10_000),
    )
    clock = FakeClock()
    raw = RawClient(clock, config=config)
    server = raw.server
    server.open_stream(1, 0.0)
    raw.read()
    for _ in range(3):
        server.send(1, b"p" * 400, 0.0)
    assert raw.events() == [StreamPaused(1)]
    assert server.scheduler.is_paused(1)
    server.set_transport_buffered(5000)  # the transport still holds a lot
    clock.advance(1.0)
    (data,) = raw.read()
    assert isinstance(data, BytesMessage)
    assert len(decode_records(bytes(data.data))) == 3
    assert server.scheduler.queued_bytes(1) == 0
    assert raw.events() == []
    assert server.scheduler.is_paused(1)
    server.set_transport_buffered(0)  # written out
    assert raw.read() == []
    assert raw.events() == [StreamResumed(1)]
    assert not server.scheduler.is_paused(1)


def test_disconnect_policy_closes_slow_consumer_with_1008() -> None:
    loop = websocket_pair(server_config=QUIET, client_config=QUIET)
    loop.take_client_events()
    server = loop.server
    server.open_stream(1, 0.0, policy=Policy.DISCONNECT, limit=100, grace=1.0)
    loop.pump()
    loop.take_client_events()
    server.set_transport_buffered(10**6)
    server.send(1, b"d" * 300, 0.0)
    loop.pump()
    assert server.next_deadline() == 1.0
    loop.advance(0.5)
    assert state_of(server) is State.WEBSOCKET
    loop.advance(0.5)
    events = loop.take_server_events()
    assert SlowConsumer(1, 300) in events
    assert closed_events(events) == [ConnectionClosed(1008, "slow consumer")]
    assert events.index(SlowConsumer(1, 300)) < events.index(closed_events(events)[0])
    assert closed_events(loop.take_client_events()) == [ConnectionClosed(1008, "slow consumer")]
    assert server.finished


# --- quiet: nothing for next_event() until new input, a timer or the application ------------


def test_quiet_only_while_streaming_with_no_event_waiting() -> None:
    config = ConnectionConfig(
        timeouts=QUIET.timeouts,
        scheduler=SchedulerConfig(high_watermark=400, low_watermark=100, max_buffered=4096),
    )
    loop = websocket_pair(server_config=config, client_config=QUIET)
    loop.take_client_events()
    server, now = loop.server, loop.clock.now
    loop.take_server_events()
    assert server.quiet  # upgraded, every event handed out
    server.open_stream(1, now)
    server.send(1, b"x" * 300, now)  # over the 400-byte mark with its overhead: paused
    assert not server.quiet  # StreamPaused waits in the scheduler
    assert isinstance(server.next_event(), StreamPaused)
    assert server.quiet
    server.close(now)
    loop.pump()
    loop.take_server_events()
    assert server.state is not State.WEBSOCKET and not server.quiet


def test_never_quiet_while_a_request_is_awaited() -> None:
    server = ServerConnection(0.0, QUIET)
    assert server.next_event() is None
    assert not server.quiet  # a request (or a pipelined one) may come with the next bytes


def test_not_quiet_once_the_peer_is_gone() -> None:
    loop = websocket_pair(server_config=QUIET, client_config=QUIET)
    server = loop.server
    loop.take_server_events()
    assert server.quiet
    server.receive_eof(loop.clock.now)  # e.g. a write failed: only next_event() reports it
    assert not server.quiet
    assert closed_events(drain(server))
