"""SSE responses end to end: server framing, heartbeats, resume, and the SSE client."""

from __future__ import annotations

import base64
import json

import pytest
from core_support import drain
from hypothesis import given
from hypothesis import strategies as st

from diaproto.client import ClientState, SseClientConnection
from diaproto.config import ConnectionConfig, Limits, SchedulerConfig, Timeouts
from diaproto.errors import LocalProtocolError
from diaproto.events import (
    ConnectionClosed,
    Event,
    Rejected,
    RemoteError,
    SlowConsumer,
    SseMessage,
    SseRequest,
    SseResponseStarted,
    StreamFinished,
)
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Outgoing, Policy
from diaproto.server import ServerConnection, State
from diaproto.server.framing import ID_PREFIX, Payload, sse_frame
from diaproto.sse import SseEvent
from diaproto.testing import FakeClock, Loopback, sse_pair
from diaproto.wire import ErrorCode

SSE_GET = b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"


def messages(events: list[Event]) -> list[SseMessage]:
    return [e for e in events if isinstance(e, SseMessage)]


def wire_body(message: SseMessage) -> dict[str, object]:
    body = json.loads(message.data)
    assert isinstance(body, dict)
    return body


def sse_server(config: ConnectionConfig | None = None) -> ServerConnection:
    """A server with an SSE response open and its head already taken."""
    server = ServerConnection(0.0, config)
    server.receive_data(SSE_GET, 0.0)
    assert isinstance(server.next_event(), SseRequest)
    server.accept_sse(now=0.0)
    server.data_to_send(0.0)
    return server


def state_of(server: ServerConnection) -> State:
    """The state, read through a call so the type checker does not keep an old narrowing."""
    return server.state


def settle(loop: Loopback) -> list[Event]:
    """Let the linger of the stream classes pass; the client's events."""
    loop.advance(0.01)
    return loop.take_client_events()


# --- the response --------------------------------------------------------------------------


def test_response_headers_stop_caching_and_proxy_buffering() -> None:
    loop = sse_pair()
    [started] = loop.take_client_events()
    assert isinstance(started, SseResponseStarted)
    assert started.status == 200
    headers = dict(started.headers)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-store"
    assert headers["x-accel-buffering"] == "no"


def test_extra_headers_and_the_initial_retry_block_on_the_wire() -> None:
    server = ServerConnection(0.0, ConnectionConfig(sse_retry_ms=1500))
    server.receive_data(SSE_GET, 0.0)
    server.next_event()
    server.accept_sse((("x-session", "abc"),), now=0.0)
    raw = server.data_to_send(0.0)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nx-session: abc" in head
    assert b"\r\ncontent-type: text/event-stream; charset=utf-8" in head
    assert body == b"d\r\nretry: 1500\n\n\r\n"  # one chunk: only the retry block


def test_client_learns_the_retry_delay() -> None:
    assert sse_pair().client.retry == 2000  # type: ignore[attr-defined]
    config = ConnectionConfig(sse_retry_ms=None)
    loop = sse_pair(server_config=config)
    assert loop.client.retry is None  # type: ignore[attr-defined]
    assert loop.server.data_to_send(0.0) == b""


def test_payload_kinds_are_framed_as_documented() -> None:
    loop = sse_pair()
    loop.take_client_events()
    server = loop.server
    server.open_stream(1, 0.0)
    assert server.send(1, b"\x00\x01\xff", 0.0) == 1
    assert server.send(1, "two\nlines", 0.0) == 2
    assert server.send(1, SseEvent("x", event="custom", id="abc", retry=10), 0.0) == 3
    assert server.send(1, b"more", 0.0) == 4
    got = messages(settle(loop))
    assert got == [
        SseMessage(base64.b64encode(b"\x00\x01\xff").decode(), "data", "1"),
        SseMessage("two\nlines", "message", "1"),  # text carries no id: the last one holds
        SseMessage("x", "custom", "abc", 10),
        SseMessage(base64.b64encode(b"more").decode(), "data", "4"),
    ]
    assert loop.client.last_event_id == "4"  # type: ignore[attr-defined]
    assert loop.client.retry == 10  # type: ignore[attr-defined]


def test_end_stream_sends_an_end_event_after_the_data() -> None:
    loop = sse_pair()
    loop.take_client_events()
    server = loop.server
    server.open_stream(7, 0.0)
    server.send(7, b"a", 0.0)
    server.send(7, b"b", 0.0)
    server.end_stream(7, 0.0)
    got = messages(settle(loop))
    assert [m.event for m in got] == ["data", "data", "end"]
    assert wire_body(got[-1]) == {"type": "end", "stream": 7, "seq": 2}
    finished = loop.take_server_events()
    assert [type(e) for e in finished] == [StreamFinished]


def test_fail_stream_overtakes_queued_data() -> None:
    loop = sse_pair()
    loop.take_client_events()
    server = loop.server
    server.open_stream(1, 0.0)
    server.open_stream(2, 0.0)
    for n in range(3):
        server.send(1, b"one%d" % n, 0.0)
        server.send(2, b"two%d" % n, 0.0)
    server.fail_stream(1, ErrorCode.INTERNAL, "model crashed", 0.0)
    got = messages(settle(loop))
    assert got[0].event == "error"
    assert wire_body(got[0]) == {
        "type": "error",
        "stream": 1,
        "code": "internal",
        "message": "model crashed",
    }
    data = [base64.b64decode(m.data) for m in got[1:]]
    assert data == [b"two0", b"two1", b"two2"]  # stream 1's queue was dropped


def test_a_connection_level_error_has_no_stream() -> None:
    loop = sse_pair()
    loop.take_client_events()
    loop.server.fail_stream(None, ErrorCode.INVALID_REQUEST, "bad query", 0.0)
    [error] = messages(settle(loop))
    assert error.event == "error"
    assert wire_body(error)["stream"] is None


# --- heartbeats ----------------------------------------------------------------------------


def test_comment_heartbeat_after_quiet() -> None:
    server = sse_server(ConnectionConfig(timeouts=Timeouts(sse_heartbeat=15.0)))
    assert server.next_deadline() == 15.0
    server.handle_timer(14.9)
    assert server.data_to_send(14.9) == b""
    server.handle_timer(15.0)
    assert server.data_to_send(15.0) == b"3\r\n:\n\n\r\n"
    assert server.next_deadline() == 30.0


def test_data_written_moves_the_heartbeat_deadline() -> None:
    server = sse_server()
    server.open_stream(1, 0.0)
    server.send(1, b"x", 10.0)
    assert server.data_to_send(10.0) != b""
    assert server.next_deadline() == 25.0
    server.handle_timer(15.0)
    assert server.data_to_send(15.0) == b""


def test_no_heartbeat_while_bytes_are_in_flight() -> None:
    server = sse_server()
    server.set_transport_buffered(100)
    server.handle_timer(15.0)
    assert server.data_to_send(15.0) == b""
    assert server.next_deadline() == 30.0  # not due again at once
    server.set_transport_buffered(-5)  # clamped to zero
    server.handle_timer(30.0)
    assert server.data_to_send(30.0) == b"3\r\n:\n\n\r\n"


def test_heartbeat_disabled() -> None:
    server = sse_server(ConnectionConfig(timeouts=Timeouts(sse_heartbeat=None)))
    assert server.next_deadline() is None
    server.handle_timer(1000.0)
    assert server.data_to_send(1000.0) == b""


def test_heartbeats_reach_the_client_as_nothing() -> None:
    loop = sse_pair()
    loop.take_client_events()
    loop.advance(100.0)
    assert loop.take_client_events() == []
    assert loop.client.state is ClientState.OPEN  # type: ignore[attr-defined]


# --- end of response and the next request --------------------------------------------------


def test_end_response_returns_to_awaiting_request() -> None:
    loop = sse_pair()
    loop.take_client_events()
    server = loop.server
    server.open_stream(1, 0.0)
    server.send(1, b"last", 0.0)
    server.end_response(0.0)
    assert server.state is State.STREAMING  # until the queue has drained
    events = settle(loop)
    assert messages(events)[-1].data == base64.b64encode(b"last").decode()
    assert events[-1] == ConnectionClosed(None, "the server ended the stream")
    assert state_of(server) is State.AWAITING_REQUEST
    assert server.next_deadline() == loop.clock.now - 0.01 + 300.0  # keep-alive idle
    assert [type(e) for e in loop.take_server_events()] == [StreamFinished]

    loop.client = SseClientConnection(loop.clock.now, "localhost", "/again", last_event_id="1")
    loop.pump()
    [request] = loop.take_server_events()
    assert isinstance(request, SseRequest)
    assert (request.target, request.last_event_id) == ("/again", "1")


# --- resume with Last-Event-ID -------------------------------------------------------------


def _first_connection(replay: ReplayBuffer[object]) -> tuple[Loopback, list[SseMessage]]:
    clock = FakeClock()
    loop = sse_pair(clock)
    loop.take_client_events()
    loop.server.open_stream(1, clock.now, replay=replay)  # type: ignore[arg-type]
    for n in range(1, 6):
        loop.server.send(1, b"chunk%d" % n, clock.now)
    return loop, messages(settle(loop))


def test_last_event_id_resume_resends_exactly_what_was_missed() -> None:
    replay: ReplayBuffer[object] = ReplayBuffer(1, max_messages=8)
    loop, seen = _first_connection(replay)
    assert [m.id for m in seen] == ["1", "2", "3", "4", "5"]
    # The client saw only up to 2 before the connection broke.
    clock = FakeClock(loop.clock.now)
    again = sse_pair(clock, last_event_id="2")
    # The retry block (a block without an id) does not make the client forget it.
    assert again.client.last_event_id == "2"  # type: ignore[attr-defined]
    again.take_client_events()
    server = again.server
    server.open_stream(1, clock.now, replay=replay)  # type: ignore[arg-type]
    assert server.resume_stream(1, after=int("2"), now=clock.now)
    resent = messages(settle(again))
    assert [(m.id, base64.b64decode(m.data)) for m in resent] == [
        ("3", b"chunk3"),
        ("4", b"chunk4"),
        ("5", b"chunk5"),
    ]
    server.send(1, b"chunk6", clock.now)  # new data continues the numbering
    [new] = messages(settle(again))
    assert new.id == "6"


def test_resume_past_the_window_is_a_replay_gap_error() -> None:
    replay: ReplayBuffer[object] = ReplayBuffer(1, max_messages=2)
    loop, _ = _first_connection(replay)
    again = sse_pair(FakeClock(loop.clock.now), last_event_id="1")
    again.take_client_events()
    server = again.server
    server.open_stream(1, again.clock.now, replay=replay)  # type: ignore[arg-type]
    assert not server.resume_stream(1, after=1, now=again.clock.now)
    [error] = messages(settle(again))
    assert error.event == "error"
    body = wire_body(error)
    assert (body["stream"], body["code"]) == (1, ErrorCode.REPLAY_GAP)
    assert "oldest message still held is 4" in str(body["message"])


# --- the SSE client ------------------------------------------------------------------------


def _client(config: ConnectionConfig | None = None, **kwargs: object) -> SseClientConnection:
    return SseClientConnection(0.0, "example", "/s", config=config, **kwargs)  # type: ignore[arg-type]


def _client_events(client: SseClientConnection) -> list[Event]:
    events: list[Event] = []
    while (event := client.next_event()) is not None:
        events.append(event)
    return events


OK_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_client_request_bytes() -> None:
    client = _client(last_event_id="9", headers=(("authorization", "t"),))
    request = client.data_to_send(0.0)
    assert request.startswith(b"GET /s HTTP/1.1\r\n")
    for line in (b"accept: text/event-stream", b"last-event-id: 9", b"authorization: t"):
        assert b"\r\n" + line + b"\r\n" in request
    assert client.data_to_send(0.0) == b""
    post = _client(method="POST", body=b"{}").data_to_send(0.0)
    assert post.startswith(b"POST /s HTTP/1.1\r\n")
    assert post.endswith(b"content-length: 2\r\n\r\n{}")


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope",
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\nnope",
    ],
)
def test_client_rejected_with_the_body(head: bytes) -> None:
    client = _client()
    client.receive_data(head, 1.0)
    rejected, closed = _client_events(client)
    assert isinstance(rejected, Rejected)
    assert rejected.status == int(head.split(b" ")[1])
    assert rejected.body == b"nope"
    assert isinstance(closed, ConnectionClosed)
    assert client.finished
    client.receive_data(b"more", 2.0)  # ignored once closed
    client.receive_eof(2.0)
    assert _client_events(client) == []


def test_client_tracks_last_event_id_and_retry() -> None:
    client = _client()
    client.receive_data(OK_HEAD, 0.0)
    stream = b"retry: 750\n\nid: a\ndata: 1\n\nid: b\n\ndata: 2\n\nid: c\ndata: cut"
    client.receive_data(_chunk(stream), 0.0)
    events = _client_events(client)
    assert isinstance(events[0], SseResponseStarted)
    assert messages(events) == [SseMessage("1", "message", "a"), SseMessage("2", "message", "b")]
    assert client.last_event_id == "b"  # "c"'s block never ended
    assert client.retry == 750


def test_client_end_of_stream_and_eof() -> None:
    client = _client()
    client.receive_data(OK_HEAD + _chunk(b"data: x\n\n") + b"0\r\n\r\n", 0.0)
    events = _client_events(client)
    assert events[-1] == ConnectionClosed(None, "the server ended the stream")
    assert messages(events) == [SseMessage("x")]

    client = _client()
    client.receive_data(OK_HEAD + _chunk(b"data: x\n\n"), 0.0)
    client.receive_eof(1.0)
    events = _client_events(client)
    assert messages(events) == [SseMessage("x")]
    assert isinstance(events[-2], RemoteError)  # the chunked body was cut short
    assert isinstance(events[-1], ConnectionClosed)


def test_client_sees_a_clean_close_of_a_close_delimited_stream() -> None:
    client = _client()
    client.receive_data(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: y\n\n", 0)
    client.receive_eof(1.0)
    events = _client_events(client)
    assert messages(events) == [SseMessage("y")]
    assert events[-1] == ConnectionClosed(None, "the server ended the stream")


def test_client_invalid_response_is_a_remote_error() -> None:
    client = _client()
    client.receive_data(b"SPDY/3 banana\r\n\r\n", 0.0)
    error, closed = _client_events(client)
    assert isinstance(error, RemoteError)
    assert error.fatal
    assert error.error.message.startswith("invalid response")
    assert isinstance(closed, ConnectionClosed)


def test_client_line_too_long_is_a_remote_error() -> None:
    config = ConnectionConfig(limits=Limits(max_message_bytes=32))
    client = _client(config)
    client.receive_data(OK_HEAD + _chunk(b"data: " + b"x" * 40), 0.0)
    events = _client_events(client)
    error = events[-2]
    assert isinstance(error, RemoteError)
    assert "longer than 32 bytes" in error.error.message
    assert events[-1] == ConnectionClosed(None, error.error.message)


def test_client_handshake_and_idle_timeouts() -> None:
    config = ConnectionConfig(timeouts=Timeouts(handshake=5.0, idle=60.0))
    client = _client(config)
    assert client.next_deadline() == 5.0
    client.handle_timer(4.0)
    assert _client_events(client) == []
    client.handle_timer(5.0)
    error, closed = _client_events(client)
    assert isinstance(error, RemoteError)
    assert error.error.message == "no response from the server in time"
    assert client.next_deadline() is None

    client = _client(config)
    client.receive_data(OK_HEAD, 1.0)
    _client_events(client)
    client.receive_data(_chunk(b":\n\n"), 30.0)
    assert client.next_deadline() == 90.0  # any byte is a sign of life
    client.handle_timer(89.0)
    assert _client_events(client) == []
    client.handle_timer(90.0)
    error, closed = _client_events(client)
    assert isinstance(error, RemoteError)
    assert error.error.message == "no bytes from the server in time"
    assert isinstance(closed, ConnectionClosed)


def test_client_without_timeouts_has_no_deadline() -> None:
    client = _client(ConnectionConfig(timeouts=Timeouts(handshake=None, idle=None)))
    assert client.next_deadline() is None
    client.receive_data(OK_HEAD, 0.0)
    _client_events(client)
    assert client.next_deadline() is None
    client.handle_timer(1e9)
    assert not client.finished


def test_client_close() -> None:
    client = _client()
    client.close(0.0)
    assert client.finished
    assert _client_events(client) == [ConnectionClosed(None, "closed by the application")]
    client.close(1.0)
    assert _client_events(client) == []


def test_client_keeps_its_reconnect_id_through_blocks_without_one() -> None:
    client = _client(last_event_id="41")
    client.receive_data(OK_HEAD + _chunk(b"retry: 10\n\n:\n\ndata: no id\n\n"), 0.0)
    assert messages(_client_events(client)) == [SseMessage("no id", "message", "41")]
    assert client.last_event_id == "41"
    client.receive_data(_chunk(b"id\n\n"), 0.0)  # an empty id clears it, as in a browser
    _client_events(client)
    assert client.last_event_id == ""


def test_a_slow_sse_consumer_is_disconnected_after_the_grace_period() -> None:
    config = ConnectionConfig(
        scheduler=SchedulerConfig(write_window=64, low_watermark=32, high_watermark=128)
    )
    server = sse_server(config)
    server.open_stream(1, 0.0, policy=Policy.DISCONNECT, limit=64, grace=2.0)
    server.set_transport_buffered(1000)  # the client stopped reading
    for _ in range(4):
        server.send(1, b"x" * 32, 0.0)
    assert server.scheduler.queued_bytes(1) > 64
    assert server.next_deadline() == 2.0
    server.handle_timer(2.0)
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    # The abandoned stream reports its final counters, and the close is the last word.
    assert [type(e) for e in events] == [SlowConsumer, StreamFinished, ConnectionClosed]
    assert events[-1] == ConnectionClosed(None, "slow consumer")
    assert server.finished


def test_stamp_sees_only_sse_events() -> None:
    # Text and data chunks are framed by the server itself; only a ready SseEvent is stamped.
    stamped: list[str] = []

    def stamp(event: SseEvent) -> SseEvent:
        stamped.append(event.data)
        return SseEvent(data=event.data, event=event.event, id=str(len(stamped)))

    loop = sse_pair(stamp=stamp)
    loop.server.open_stream(1, loop.clock.now)
    loop.server.send(1, "plain", loop.clock.now)
    loop.server.send(1, SseEvent(data="ready", event="note"), loop.clock.now)
    received = messages(settle(loop))
    assert stamped == ["ready"]
    assert [(m.data, m.id) for m in received] == [("plain", None), ("ready", "1")]


@given(
    st.lists(st.binary(max_size=40) | st.text(max_size=40), max_size=5),
    st.integers(0, 10**6),
    st.from_regex(ID_PREFIX, fullmatch=True),
)
def test_data_and_text_frame_as_their_sse_events(
    payloads: list[bytes | str], seq: int, prefix: str
) -> None:
    # The framer writes data chunks and text out directly; the bytes are the SseEvent's.
    batch = [Outgoing[Payload](1, seq + i, p, len(p)) for i, p in enumerate(payloads)]
    expected = [
        SseEvent(data=base64.b64encode(p).decode(), event="data", id=f"{prefix}{seq + i}")
        if isinstance(p, bytes)
        else SseEvent(data=p)
        for i, p in enumerate(payloads)
    ]
    assert sse_frame(batch, prefix.encode()) == b"".join(event.encode() for event in expected)


def test_an_id_prefix_goes_before_each_data_events_sequence_number() -> None:
    for stamp in (None, lambda event: event):
        loop = sse_pair(id_prefix="0a1b2c3d.", stamp=stamp)
        loop.server.open_stream(1, loop.clock.now)
        loop.server.send(1, b"one", loop.clock.now)
        loop.server.send(1, SseEvent(data="note", event="note"), loop.clock.now)
        loop.server.send(1, b"two", loop.clock.now)
        received = messages(settle(loop))
        assert [(m.event, m.id) for m in received] == [
            ("data", "0a1b2c3d.1"),
            ("note", "0a1b2c3d.1"),  # framed as it is: no id, so the last one stands
            ("data", "0a1b2c3d.3"),
        ]
        assert isinstance(loop.client, SseClientConnection)
        assert loop.client.last_event_id == "0a1b2c3d.3"  # what a reconnect sends back


@pytest.mark.parametrize("prefix", ["a\nb", "a\x00", "é", "x" * 65, "a b", "a:b"])
def test_an_id_prefix_that_could_break_an_event_is_refused(prefix: str) -> None:
    clock = FakeClock()
    server = ServerConnection(clock.now)
    server.receive_data(SSE_GET, clock.now)
    [request] = drain(server)
    assert isinstance(request, SseRequest)
    with pytest.raises(LocalProtocolError, match="SSE id prefix"):
        server.accept_sse(now=clock.now, id_prefix=prefix)
    # Nothing was answered: the request can still be refused properly.
    server.respond(400, (), b"bad prefix\n", now=clock.now)
    assert server.data_to_send(clock.now).startswith(b"HTTP/1.1 400 ")


# --- shutdown ----------------------------------------------------------------------------


def test_shutdown_ends_the_response_with_going_away_and_the_last_chunk() -> None:
    server = sse_server()
    server.open_stream(1, 0.0)
    server.send(1, b"\x01\x02", 0.0)
    sent = server.data_to_send(1.0)
    assert b"event: data" in sent
    server.send(1, b"never sent", 1.0)
    server.close(1.0, 1001, "server shutting down")
    assert server.finished
    raw = server.data_to_send(1.0)
    assert raw.endswith(b"\r\n0\r\n\r\n")  # the chunked body's terminating chunk
    body = raw.split(b"\r\n")[1].decode()
    assert body.startswith("event: error\ndata: ")
    error = json.loads(body.removeprefix("event: error\ndata: ").strip())
    assert error == {
        "type": "error",
        "stream": None,
        "code": ErrorCode.GOING_AWAY,
        "message": "server shutting down",
    }
    assert server.unsent == [b"never sent"]  # queued data is dropped, and reported


def test_shutdown_error_reaches_the_sse_client_as_its_last_event() -> None:
    loop = sse_pair()
    loop.take_client_events()
    loop.server.open_stream(1, loop.clock.now)
    loop.server.send(1, b"audio", loop.clock.now)
    loop.pump()
    loop.server.close(loop.clock.now, 1001, "bye")
    loop.pump()
    received = messages(loop.take_client_events())
    assert received[-1].event == "error"
    assert wire_body(received[-1])["code"] == "going_away"


def test_a_close_other_than_shutdown_still_just_closes() -> None:
    server = sse_server()
    server.close(1.0)
    assert server.finished
    assert server.data_to_send(1.0) == b""  # the transport closes: the body is cut short


# --- pacing ---------------------------------------------------------------------------------


def test_a_paced_stream_reaches_the_client_at_the_pace_with_its_lead() -> None:
    """An SSE client cannot grant credit: the clock does (``pace``). The server's own
    deadlines drive it: the client has the lead at once, then the pace, never more than
    one message beyond, and all of it in the end."""
    pace, lead, size = 1000.0, 3000, 500  # bytes a second; bytes ahead; a message
    loop = sse_pair()
    loop.take_client_events()
    loop.server.open_stream(1, loop.clock.now, pace=pace, lead=lead, limit=10**6)
    for i in range(40):
        loop.server.send(1, bytes([i]) * size, loop.clock.now)
    loop.server.end_stream(1, loop.clock.now)
    received = 0
    for _ in range(40):  # 20 s: 3 s of lead, then 17 s at the pace
        loop.advance(0.5)
        data = [m for m in messages(loop.take_client_events()) if m.event == "data"]
        received += sum(len(base64.b64decode(m.data)) for m in data)
        allowed = lead + loop.clock.now * pace
        assert min(allowed - size, 40 * size) <= received <= allowed + size
    assert received == 40 * size
