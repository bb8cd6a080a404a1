"""WebSocket end to end: ServerConnection with WebSocketClientConnection over the loopback, and
with wsproto's own client driven by hand to check the bytes on the wire. Time is a FakeClock."""

from __future__ import annotations

import struct

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.events import Event as WsEvent
from wsproto.events import Request as WsRequest

from diaproto.client import ClientState, WebSocketClientConnection
from diaproto.config import ConnectionConfig, Limits, SchedulerConfig, Timeouts
from diaproto.errors import LocalProtocolError
from diaproto.events import (
    ConnectionClosed,
    Event,
    Rejected,
    RemoteError,
    SlowConsumer,
    StreamFinished,
    StreamPaused,
    StreamResumed,
    WebSocketAccepted,
    WebSocketMessage,
    WebSocketRequest,
)
from diaproto.replay import ReplayBuffer
from diaproto.runtime import Connection
from diaproto.scheduler import Policy, Priority
from diaproto.server import ServerConnection, State
from diaproto.server.framing import Payload
from diaproto.testing import FakeClock, Loopback, websocket_pair
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
from diaproto.wsframes import encode_frame

NO_HEARTBEAT = Timeouts(ping_interval=None, ping_timeout=None, idle=None)
QUIET = ConnectionConfig(timeouts=NO_HEARTBEAT)


# --- helpers -------------------------------------------------------------------------------


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """One client frame built by hand (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    key = b"\x11\x22\x33\x44"
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def drain(conn: Connection) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


class RawClient:
    """wsproto's own client, by hand, against a ServerConnection past the handshake."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        offer: tuple[str, ...] = ("diaproto.v1",),
        accept: str | None = "diaproto.v1",
        config: ConnectionConfig | None = None,
    ) -> None:
        self.clock = clock
        self.server = ServerConnection(clock.now, config)
        self.ws = WSConnection(ConnectionType.CLIENT)
        request = WsRequest(host="localhost", target="/ws", subprotocols=list(offer))
        self.server.receive_data(self.ws.send(request), clock.now)
        events = drain(self.server)
        assert len(events) == 1
        assert isinstance(events[0], WebSocketRequest)
        self.server.accept_websocket(accept, now=clock.now)
        self.ws.receive_data(self.server.data_to_send(clock.now))
        accepted = list(self.ws.events())
        assert len(accepted) == 1
        assert isinstance(accepted[0], AcceptConnection)
        assert accepted[0].subprotocol == accept

    def send(self, event: WsEvent) -> None:
        self.server.receive_data(self.ws.send(event), self.clock.now)

    def send_raw(self, data: bytes) -> None:
        self.server.receive_data(data, self.clock.now)

    def events(self) -> list[Event]:
        return drain(self.server)

    def read(self) -> list[WsEvent]:
        """Whatever the server has to send now, parsed by wsproto."""
        self.ws.receive_data(self.server.data_to_send(self.clock.now))
        return list(self.ws.events())


def state_of(server: ServerConnection) -> State:
    """The state, read through a call so that mypy does not narrow it between steps."""
    return server.state


def closed_events(events: list[Event]) -> list[ConnectionClosed]:
    return [e for e in events if isinstance(e, ConnectionClosed)]


def remote_errors(events: list[Event]) -> list[RemoteError]:
    return [e for e in events if isinstance(e, RemoteError)]


# --- subprotocol negotiation ---------------------------------------------------------------


def test_accepted_subprotocol_is_seen_by_client() -> None:
    loop = websocket_pair(offer=("mcp", "diaproto.v1"), accept="mcp")
    assert loop.take_client_events() == [WebSocketAccepted("mcp")]
    assert loop.server.subprotocol == "mcp"
    assert isinstance(loop.client, WebSocketClientConnection)
    assert loop.client.subprotocol == "mcp"
    assert loop.client.state is ClientState.OPEN


def test_an_idle_websocket_holds_no_stream_until_a_control_message() -> None:
    loop = websocket_pair()
    server = loop.server
    assert not hasattr(server, "__dict__")  # slotted: no per-connection attribute dict
    assert server.scheduler.stream_ids == []  # the control stream opens on first use
    server.open_stream(1, loop.clock.now)  # diaproto.v1 says "open" on the control stream
    loop.advance(0.01)
    assert any(isinstance(e, StreamOpened) for e in loop.take_client_events())
    assert server.scheduler.stream_ids == [1, -1]


def test_no_subprotocol_when_none_accepted() -> None:
    loop = websocket_pair(offer=("diaproto.v1",), accept=None)
    assert loop.take_client_events() == [WebSocketAccepted(None)]
    assert loop.server.subprotocol is None


def test_no_subprotocol_when_none_offered() -> None:
    clock = FakeClock()
    server = ServerConnection(clock.now)
    client = WebSocketClientConnection(clock.now, "localhost", "/ws")
    loop = Loopback(server, client, clock)
    loop.pump()
    (request,) = loop.take_server_events()
    assert isinstance(request, WebSocketRequest)
    assert request.subprotocols == ()
    assert request.target == "/ws"
    server.accept_websocket(headers=(("x-extra", "1"),), now=clock.now)
    loop.pump()
    assert loop.take_client_events() == [WebSocketAccepted(None, (("x-extra", "1"),))]


def test_accepting_a_subprotocol_not_offered_is_local_error() -> None:
    clock = FakeClock()
    server = ServerConnection(clock.now)
    client = WebSocketClientConnection(clock.now, "localhost", subprotocols=("a", "b"))
    loop = Loopback(server, client, clock)
    loop.pump()
    (request,) = loop.take_server_events()
    assert isinstance(request, WebSocketRequest)
    assert request.subprotocols == ("a", "b")
    with pytest.raises(LocalProtocolError, match="did not offer"):
        server.accept_websocket("c", now=clock.now)
    assert state_of(server) is State.REQUEST_RECEIVED  # still the application's to answer
    server.accept_websocket("b", now=clock.now)
    loop.pump()
    assert loop.take_client_events() == [WebSocketAccepted("b")]


# --- raw mode ------------------------------------------------------------------------------


def test_raw_mode_messages_both_ways() -> None:
    loop = websocket_pair(offer=(), accept=None, server_config=QUIET, client_config=QUIET)
    loop.take_client_events()
    now = loop.clock.now
    loop.server.open_stream(1, now)
    assert loop.server.send(1, b"\x00\x01binary", now) == 1
    assert loop.server.send(1, "text \u00e9", now) == 2
    loop.advance(0.01)
    assert loop.take_client_events() == [
        WebSocketMessage(b"\x00\x01binary"),
        WebSocketMessage("text \u00e9"),
    ]
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_message("hi", loop.clock.now)
    loop.client.send_message(b"\xff", loop.clock.now)
    loop.pump()
    assert loop.take_server_events() == [WebSocketMessage("hi"), WebSocketMessage(b"\xff")]


def test_raw_mode_frames_on_the_wire() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.server.open_stream(3, 0.0)
    raw.server.send(3, b"ab", 0.0)
    raw.server.send(3, "cd", 0.0)
    received = raw.read()
    binary, text = received
    assert isinstance(binary, BytesMessage)
    assert binary.data == b"ab"
    assert isinstance(text, TextMessage)
    assert text.data == "cd"
    raw.send(TextMessage(data="x"))
    raw.send(BytesMessage(data=b"y"))
    assert raw.events() == [WebSocketMessage("x"), WebSocketMessage(b"y")]


def test_raw_mode_has_no_open_message() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.server.open_stream(1, 0.0)
    raw.server.end_stream(1, 0.0)
    assert raw.read() == []
    assert [type(e) for e in raw.events()] == [StreamFinished]


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


# --- limits and framing violations ---------------------------------------------------------


def test_message_too_big_closes_1009() -> None:
    config = ConnectionConfig(limits=Limits(max_message_bytes=100))
    loop = websocket_pair(offer=(), accept=None, server_config=config)
    loop.take_client_events()
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_message("x" * 100, 0.0)
    loop.pump()
    assert loop.take_server_events() == [WebSocketMessage("x" * 100)]
    loop.client.send_message("x" * 101, 0.0)
    loop.pump()
    events = loop.take_server_events()
    (error,) = remote_errors(events)
    assert error.fatal
    assert error.error.close_code == 1009
    assert [e.code for e in closed_events(events)] == [1009]
    assert [e.code for e in closed_events(loop.take_client_events())] == [1009]


def test_fragmented_message_over_the_limit_closes_1009() -> None:
    raw = RawClient(
        FakeClock(),
        offer=(),
        accept=None,
        config=ConnectionConfig(limits=Limits(max_message_bytes=10)),
    )
    raw.send(BytesMessage(data=b"x" * 6, message_finished=False))
    assert raw.events() == []
    raw.send(BytesMessage(data=b"x" * 6, message_finished=True))
    events = raw.events()
    assert [e.code for e in closed_events(events)] == [1009]
    (close,) = raw.read()
    assert isinstance(close, CloseConnection)
    assert close.code == 1009


def test_invalid_utf8_closes_1007() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.send_raw(client_frame(0x1, b"\xff\xfe"))
    events = raw.events()
    (error,) = remote_errors(events)
    assert error.error.close_code == 1007
    assert [e.code for e in closed_events(events)] == [1007]
    (close,) = raw.read()
    assert isinstance(close, CloseConnection)
    assert close.code == 1007
    assert raw.server.finished


@pytest.mark.parametrize(
    "frame",
    [
        client_frame(0x1, b"hi", masked=False),  # a client must mask
        client_frame(0x3, b""),  # reserved opcode
        client_frame(0x1, b"hi", rsv=0x40),  # RSV1 without an extension
        client_frame(0x9, b"x", fin=False),  # fragmented control frame
        client_frame(0x0, b"x"),  # continuation with nothing to continue
    ],
    ids=["unmasked", "bad-opcode", "rsv1", "fragmented-ping", "orphan-continuation"],
)
def test_framing_violation_closes_1002(frame: bytes) -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.send_raw(frame)
    events = raw.events()
    assert len(remote_errors(events)) == 1
    assert [e.code for e in closed_events(events)] == [1002]
    (close,) = raw.read()
    assert isinstance(close, CloseConnection)
    assert close.code == 1002
    raw.send_raw(b"more garbage")  # nothing is read after the close
    assert raw.events() == []


def test_fragmented_messages_are_reassembled() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.send(TextMessage(data="hel", message_finished=False))
    raw.send(Ping(payload=b"between"))  # control frames may come between fragments
    raw.send(TextMessage(data="lo", message_finished=True))
    raw.send(BytesMessage(data=b"\x01", message_finished=False))
    raw.send(BytesMessage(data=b"\x02", message_finished=False))
    raw.send(BytesMessage(data=b"\x03", message_finished=True))
    assert raw.events() == [WebSocketMessage("hello"), WebSocketMessage(b"\x01\x02\x03")]
    assert raw.read() == [Pong(payload=b"between")]


def test_fragmented_wire_control_message() -> None:
    raw = RawClient(FakeClock())
    raw.send(TextMessage(data='{"type":"can', message_finished=False))
    raw.send(TextMessage(data='cel","stream":9}', message_finished=True))
    assert raw.events() == [CancelStream(9)]


def test_ping_is_answered_with_pong() -> None:
    raw = RawClient(FakeClock())
    raw.send(Ping(payload=b"are you there"))
    assert raw.events() == []
    assert raw.read() == [Pong(payload=b"are you there")]


def test_pong_needs_no_answer() -> None:
    raw = RawClient(FakeClock())
    raw.send(Pong(payload=b"unsolicited"))
    assert raw.events() == []
    assert raw.read() == []


# --- close handshake -----------------------------------------------------------------------


def test_client_initiated_close() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.close(0.0, 1000, "bye")
    assert loop.client.state is ClientState.CLOSING
    loop.pump()
    assert closed_events(loop.take_server_events()) == [ConnectionClosed(1000, "bye")]
    assert closed_events(loop.take_client_events()) == [ConnectionClosed(1000, "bye")]
    assert loop.server.finished
    assert loop.client.finished


def test_raw_client_close_is_echoed() -> None:
    raw = RawClient(FakeClock())
    raw.send(CloseConnection(code=1001, reason="going"))
    assert raw.events() == [ConnectionClosed(1001, "going")]
    (echo,) = raw.read()
    assert isinstance(echo, CloseConnection)
    assert echo.code == 1001
    assert state_of(raw.server) is State.CLOSED


def test_server_close_goes_through_closing() -> None:
    raw = RawClient(FakeClock())
    raw.server.open_stream(1, 0.0)
    raw.server.set_transport_buffered(10**6)
    raw.read()
    raw.server.send(1, b"dropped", 0.0)
    raw.server.close(0.0, 1001, "shutting down")
    assert state_of(raw.server) is State.CLOSING
    assert not raw.server.finished
    (close,) = raw.read()  # queued data is dropped; the close frame goes
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (1001, "shutting down")
    raw.server.close(0.0)  # closing already: nothing more
    assert raw.read() == []
    raw.send_raw(encode_close_reply(1001))
    events = raw.events()
    assert closed_events(events) == [ConnectionClosed(1001, "")]
    assert state_of(raw.server) is State.CLOSED
    raw.server.close(1.0)  # closed: a no-op
    assert raw.server.data_to_send(1.0) == b""


def encode_close_reply(code: int) -> bytes:
    return client_frame(0x8, struct.pack("!H", code))


def test_close_timeout_drops_at_exactly_close_sent_plus_timeout() -> None:
    clock = FakeClock()
    raw = RawClient(clock, config=ConnectionConfig(timeouts=Timeouts(close_timeout=5.0)))
    clock.advance(7.0)
    raw.server.close(clock.now)
    assert raw.server.next_deadline() == 12.0
    raw.server.handle_timer(11.999)
    assert state_of(raw.server) is State.CLOSING
    raw.server.handle_timer(12.0)
    assert state_of(raw.server) is State.CLOSED
    assert raw.events() == [ConnectionClosed(1006, "close handshake timed out")]
    assert raw.server.next_deadline() is None


def test_close_timeout_none_waits_forever() -> None:
    raw = RawClient(FakeClock(), config=ConnectionConfig(timeouts=Timeouts(close_timeout=None)))
    raw.server.close(0.0)
    assert raw.server.next_deadline() is None
    raw.server.handle_timer(1e9)
    assert state_of(raw.server) is State.CLOSING


def test_messages_during_closing_are_still_delivered() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.server.close(0.0)
    raw.send(TextMessage(data="late"))
    assert raw.events() == [WebSocketMessage("late")]


def test_ping_during_closing_is_not_answered() -> None:
    raw = RawClient(FakeClock())
    raw.server.close(0.0)
    raw.read()
    raw.send_raw(client_frame(0x9, b"p"))
    assert raw.events() == []
    assert raw.server.data_to_send(0.0) == b""
    assert state_of(raw.server) is State.CLOSING


def test_bad_wire_message_during_closing_is_reported_only() -> None:
    raw = RawClient(FakeClock())
    raw.server.close(0.0)
    raw.read()
    raw.send_raw(client_frame(0x1, b"not json"))
    (error,) = raw.events()
    assert isinstance(error, RemoteError)
    assert not error.fatal
    assert raw.server.data_to_send(0.0) == b""


def test_garbage_during_closing_closes_without_a_second_close_frame() -> None:
    raw = RawClient(FakeClock())
    raw.server.close(0.0)
    raw.read()
    raw.send_raw(client_frame(0x3, b""))
    events = raw.events()
    assert [e.code for e in closed_events(events)] == [1002]
    assert raw.server.data_to_send(0.0) == b""


def test_client_eof_is_1006() -> None:
    loop = websocket_pair()
    loop.server.receive_eof(0.0)
    loop.server.receive_eof(0.0)  # twice is harmless
    assert closed_events(loop.take_server_events() + drain(loop.server)) == [
        ConnectionClosed(1006, "")
    ]
    assert loop.server.finished
    loop.server.receive_data(b"after eof", 0.0)
    assert loop.server.next_event() is None


# --- heartbeat -----------------------------------------------------------------------------


def test_server_pings_after_silence_and_answering_client_stays() -> None:
    loop = websocket_pair(client_config=QUIET)
    loop.take_client_events()
    server = loop.server
    assert server.next_deadline() == 20.0
    loop.advance(19.0)
    assert server.next_deadline() == 20.0
    loop.advance(1.0)  # the ping goes at 20 and the client answers at once
    assert state_of(server) is State.WEBSOCKET
    assert server.next_deadline() == 40.0
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_wire(CancelStream(9), loop.clock.now)  # a message: idle restarts at 20
    loop.pump()
    loop.advance(279.0)
    assert loop.clock.now == 299.0
    assert state_of(server) is State.WEBSOCKET  # pings alone would have idled out at 300
    assert loop.take_server_events() == [CancelStream(9)]
    assert server.next_deadline() == 300.0  # the next ping; idle is due at 320
    loop.advance(20.0)
    assert loop.clock.now == 319.0
    assert state_of(server) is State.WEBSOCKET
    loop.advance(1.0)
    assert closed_events(loop.take_server_events()) == [ConnectionClosed(1000, "idle timeout")]


def test_ping_seen_on_the_wire_and_unanswered_ping_closes_1011() -> None:
    clock = FakeClock()
    raw = RawClient(clock)
    server = raw.server
    assert server.next_deadline() == 20.0
    server.handle_timer(19.5)
    assert server.data_to_send(19.5) == b""
    clock.now = 20.0
    server.handle_timer(20.0)
    (ping,) = raw.read()
    assert isinstance(ping, Ping)
    assert server.next_deadline() == 40.0  # ping_sent + ping_timeout
    server.handle_timer(39.9)
    assert state_of(server) is State.WEBSOCKET
    clock.now = 40.0
    server.handle_timer(40.0)
    assert state_of(server) is State.CLOSING
    (close,) = raw.read()
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (1011, "keepalive ping timeout")
    assert server.next_deadline() == 45.0
    server.handle_timer(45.0)
    assert raw.events() == [ConnectionClosed(1006, "close handshake timed out")]


def test_any_byte_answers_a_ping() -> None:
    clock = FakeClock()
    raw = RawClient(clock, offer=(), accept=None)
    clock.now = 20.0
    raw.server.handle_timer(20.0)
    raw.read()
    clock.now = 30.0
    raw.send(TextMessage(data="late but alive"))
    assert raw.server.next_deadline() == 50.0
    raw.server.handle_timer(40.0)
    assert state_of(raw.server) is State.WEBSOCKET


def test_idle_timeout_closes_with_1000() -> None:
    config = ConnectionConfig(timeouts=Timeouts(ping_interval=None, idle=30.0))
    loop = websocket_pair(server_config=config, client_config=QUIET)
    loop.take_client_events()
    assert loop.server.next_deadline() == 30.0
    loop.advance(29.0)
    assert state_of(loop.server) is State.WEBSOCKET
    loop.advance(1.0)
    assert closed_events(loop.take_server_events()) == [ConnectionClosed(1000, "idle timeout")]
    assert closed_events(loop.take_client_events()) == [ConnectionClosed(1000, "idle timeout")]


def test_heartbeat_pings_alone_do_not_prevent_idle_close() -> None:
    config = ConnectionConfig(timeouts=Timeouts(ping_interval=10.0, idle=35.0))
    loop = websocket_pair(server_config=config, client_config=QUIET)
    loop.advance(34.0)
    assert state_of(loop.server) is State.WEBSOCKET
    loop.advance(1.0)
    assert state_of(loop.server) is State.CLOSED


def test_no_timers_means_no_deadline() -> None:
    loop = websocket_pair(server_config=QUIET, client_config=QUIET)
    assert loop.server.next_deadline() is None
    assert loop.client.next_deadline() is None


# --- client side ---------------------------------------------------------------------------


def test_client_rejected_with_body() -> None:
    clock = FakeClock()
    server = ServerConnection(clock.now)
    client = WebSocketClientConnection(clock.now, "localhost", subprotocols=("diaproto.v1",))
    loop = Loopback(server, client, clock)
    loop.pump()
    loop.take_server_events()
    server.respond(403, (("content-type", "text/plain"),), b"forbidden", now=clock.now)
    loop.pump()
    events = loop.take_client_events()
    assert len(events) == 2
    rejected, closed = events
    assert isinstance(rejected, Rejected)
    assert (rejected.status, rejected.body) == (403, b"forbidden")
    assert ("content-type", "text/plain") in rejected.headers
    assert closed == ConnectionClosed(None, "rejected with 403")
    assert client.finished


def test_client_rejected_without_body() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.data_to_send(0.0)
    client.receive_data(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", 0.0)
    events = drain(client)
    assert events[0] == Rejected(404, (("content-length", "0"),), b"")
    assert events[1] == ConnectionClosed(None, "rejected with 404")


def test_client_rejected_with_informational_status() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n", 0.0)
    events = drain(client)
    assert isinstance(events[0], Rejected)
    assert events[0].status == 100
    assert client.state is ClientState.CLOSED


def test_client_rejected_body_in_pieces() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.receive_data(b"HTTP/1.1 500 Oops\r\ncontent-length: 6\r\n\r\nabc", 0.0)
    assert drain(client) == []
    client.receive_data(b"def", 0.0)
    events = drain(client)
    assert isinstance(events[0], Rejected)
    assert events[0].body == b"abcdef"


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
        b"sec-websocket-accept: wrong\r\n\r\n",
    ],
    ids=["not-http", "bad-accept"],
)
def test_client_invalid_handshake_answer_is_remote_error(answer: bytes) -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.receive_data(answer, 0.0)  # must not raise
    events = drain(client)
    assert len(events) == 2
    assert isinstance(events[0], RemoteError)
    assert events[0].fatal
    assert isinstance(events[1], ConnectionClosed)
    assert client.finished
    client.receive_data(b"more", 0.0)
    assert drain(client) == []


def test_client_eof_before_answer() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.receive_eof(0.0)  # must not raise
    events = drain(client)
    assert isinstance(events[-1], ConnectionClosed)
    assert client.finished


def test_client_handshake_timeout() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    assert client.next_deadline() == 10.0
    client.handle_timer(9.99)
    assert drain(client) == []
    client.handle_timer(10.0)
    events = drain(client)
    assert isinstance(events[0], RemoteError)
    assert events[1] == ConnectionClosed(None, "no handshake answer in time")
    assert client.next_deadline() is None
    client.handle_timer(100.0)
    assert drain(client) == []


def test_client_without_handshake_timeout() -> None:
    config = ConnectionConfig(timeouts=Timeouts(handshake=None))
    client = WebSocketClientConnection(0.0, "localhost", config=config)
    assert client.next_deadline() is None
    client.handle_timer(1e9)
    assert client.state is ClientState.CONNECTING
    client.close(1e9)
    assert drain(client) == [ConnectionClosed(None, "closed before the handshake completed")]
    client.close(1e9)  # already closed
    assert drain(client) == []


def test_client_keepalive_ping_answered() -> None:
    loop = websocket_pair(server_config=QUIET)
    loop.take_client_events()
    assert loop.client.next_deadline() == 20.0
    loop.advance(20.0)
    assert loop.client.next_deadline() == 40.0
    assert not loop.client.finished


def test_client_ping_timeout_then_close_timeout() -> None:
    loop = websocket_pair(server_config=QUIET)
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    loop.take_client_events()
    client.handle_timer(20.0)
    ping = client.data_to_send(20.0)
    assert ping[0] == 0x89  # a final ping frame
    assert client.next_deadline() == 40.0
    client.handle_timer(40.0)
    assert client.state is ClientState.CLOSING
    close = client.data_to_send(40.0)
    assert close[0] == 0x88
    assert client.next_deadline() == 45.0
    client.handle_timer(45.0)
    assert drain(client) == [ConnectionClosed(1006, "close handshake timed out")]
    loop.server.receive_data(ping + close, 45.0)
    server_events = drain(loop.server)
    assert closed_events(server_events) == [ConnectionClosed(1011, "keepalive ping timeout")]


def test_client_idle_timeout() -> None:
    config = ConnectionConfig(timeouts=Timeouts(ping_interval=None, idle=30.0))
    loop = websocket_pair(server_config=QUIET, client_config=config)
    loop.advance(30.0)
    assert closed_events(loop.take_client_events()) == [ConnectionClosed(1000, "idle timeout")]
    assert loop.client.finished


def test_client_answers_server_close_and_ping() -> None:
    loop = websocket_pair(offer=(), accept=None)
    loop.take_client_events()
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    client.receive_data(bytes((0x89, 2)) + b"hi", 0.0)
    assert drain(client) == []
    pong = client.data_to_send(0.0)
    loop.server.receive_data(pong, 0.0)
    assert drain(loop.server) == []
    loop.server.close(0.0, 1001)
    loop.pump()
    assert closed_events(loop.take_client_events()) == [ConnectionClosed(1001, "")]
    assert loop.server.finished


def test_client_refuses_oversize_message() -> None:
    config = ConnectionConfig(limits=Limits(max_message_bytes=4))
    loop = websocket_pair(offer=(), accept=None, client_config=config)
    loop.take_client_events()
    loop.server.open_stream(1, 0.0)
    loop.server.send(1, b"12345", 0.0)
    loop.pump()
    events = loop.take_client_events()
    assert [e.code for e in closed_events(events)] == [1009]
    assert [e.code for e in closed_events(loop.take_server_events())] == [1009]


def test_client_refuses_masked_server_frame() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    loop.client.receive_data(client_frame(0x1, b"x"), 0.0)
    events = drain(loop.client)
    assert isinstance(events[0], RemoteError)
    assert [e.code for e in closed_events(events)] == [1002]


def test_client_garbage_while_closing_is_error_without_close_frame() -> None:
    loop = websocket_pair()
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    client.close(0.0)
    client.data_to_send(0.0)
    client.receive_data(bytes((0x83, 0)), 0.0)
    events = drain(client)
    assert [e.code for e in closed_events(events)] == [1002]
    assert client.data_to_send(0.0) == b""


def test_client_ping_during_closing_is_not_answered() -> None:
    loop = websocket_pair()
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    client.close(0.0)
    client.data_to_send(0.0)
    client.receive_data(bytes((0x89, 0)), 0.0)
    assert drain(client) == []
    assert client.data_to_send(0.0) == b""
    client.close(0.0)  # already closing
    assert client.state is ClientState.CLOSING


def test_client_wire_decoding_errors_are_not_fatal() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    client.receive_data(encode_frame(0x1, b'{"type":"what"}'), 0.0)
    client.receive_data(encode_frame(0x2, b"\x00\x00"), 0.0)
    events = drain(client)
    assert len(events) == 2
    assert all(isinstance(e, RemoteError) and not e.fatal for e in events)
    assert client.state is ClientState.OPEN


def test_client_eof_when_open() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    loop.client.receive_eof(0.0)
    loop.client.receive_eof(0.0)
    assert drain(loop.client) == [ConnectionClosed(1006, "")]
    loop.client.receive_eof(0.0)
    loop.client.receive_data(b"x", 0.0)
    assert loop.client.next_deadline() is None
    loop.client.handle_timer(1e9)
    assert loop.client.next_event() is None


def test_client_send_before_open_is_local_error() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    with pytest.raises(LocalProtocolError):
        client.send_message("early", 0.0)
    with pytest.raises(LocalProtocolError):
        client.send_wire(CancelStream(1), 0.0)


# --- the upgrade request -------------------------------------------------------------------

_KEY_HEADER = "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (
            "POST / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            f"sec-websocket-version: 13\r\n{_KEY_HEADER}content-length: 0\r\n\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: keep-alive\r\n"
            f"sec-websocket-version: 13\r\n{_KEY_HEADER}\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            f"sec-websocket-version: 8\r\n{_KEY_HEADER}\r\n",
            426,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            "sec-websocket-version: 13\r\nsec-websocket-key: c2hvcnQ=\r\n\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            "sec-websocket-version: 13\r\nsec-websocket-key: !!not base64!!\r\n\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            "sec-websocket-version: 13\r\n\r\n",
            400,
        ),
    ],
    ids=["post", "no-connection-upgrade", "version-8", "short-key", "bad-base64", "no-key"],
)
def test_invalid_upgrade_is_refused(request_head: str, status: int) -> None:
    server = ServerConnection(0.0)
    server.receive_data(request_head.encode(), 0.0)
    events = drain(server)
    (error,) = remote_errors(events)
    assert error.fatal
    assert error.error.http_status == status
    answer = server.data_to_send(0.0)
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert (b"sec-websocket-version: 13" in answer) == (status == 426)
    assert server.finished


def test_upgrade_with_frames_in_the_same_packet() -> None:
    """Frames sent right behind the upgrade request are kept for the WebSocket."""
    ws = WSConnection(ConnectionType.CLIENT)
    request = ws.send(WsRequest(host="h", target="/", subprotocols=[]))
    server = ServerConnection(0.0)
    server.receive_data(request + client_frame(0x1, b"early"), 0.0)
    (upgrade,) = drain(server)
    assert isinstance(upgrade, WebSocketRequest)
    server.accept_websocket(now=0.0)
    assert drain(server) == [WebSocketMessage("early")]


def test_accept_websocket_with_invalid_header_is_local_error() -> None:
    clock = FakeClock()
    server = ServerConnection(clock.now)
    server.receive_data(upgrade_bytes(), clock.now)
    drain(server)
    for headers in ((("bad name", "x"),), (("x", "a\r\nb"),), (("x", "\u4e00"),)):
        with pytest.raises(LocalProtocolError, match="invalid response"):
            server.accept_websocket(headers=headers, now=clock.now)
    assert state_of(server) is State.REQUEST_RECEIVED
    assert server.data_to_send(clock.now) == b""


def upgrade_bytes() -> bytes:
    return WSConnection(ConnectionType.CLIENT).send(WsRequest(host="h", target="/"))


def test_client_data_after_unread_eof_is_ignored() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    client = loop.client
    client.receive_eof(0.0)
    client.receive_data(encode_frame(0x1, b'{"type":"open","stream":1}'), 0.0)  # must not raise
    assert drain(client) == [ConnectionClosed(1006, "")]
