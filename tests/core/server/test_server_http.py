"""The HTTP/1.1 front of ServerConnection: routing, answers, keep-alive, limits and timers."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest

from diaproto.config import ConnectionConfig, Limits, Timeouts
from diaproto.errors import LocalProtocolError, RemoteProtocolError
from diaproto.events import (
    ConnectionClosed,
    Event,
    RemoteError,
    Request,
    SseRequest,
    WebSocketRequest,
)
from diaproto.server import ServerConnection, State
from diaproto.sse import SseEvent

KEY = base64.b64encode(b"0123456789abcdef").decode()
WS_HEAD = (
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
)
WS_REQUEST = (WS_HEAD + "\r\n").encode()
GET = b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n"
SSE_GET = b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"


def drain(conn: ServerConnection) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


def feed(conn: ServerConnection, data: bytes, now: float = 0.0) -> list[Event]:
    conn.receive_data(data, now)
    return drain(conn)


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and the rest of one response."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, data
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, rest


def state_of(conn: ServerConnection) -> State:
    """The state, read through a call so the type checker does not keep an old narrowing."""
    return conn.state


def only_remote_error(events: list[Event]) -> RemoteProtocolError:
    """The events of a refused request: one fatal RemoteError, then ConnectionClosed."""
    assert len(events) == 2, events
    first, last = events
    assert isinstance(first, RemoteError)
    assert first.fatal
    assert isinstance(last, ConnectionClosed)
    assert last.reason == first.error.message
    return first.error


def refused(data: bytes, config: ConnectionConfig | None = None) -> tuple[int, dict[str, str]]:
    """Feed one request that must be refused; return the answer's status and headers."""
    conn = ServerConnection(0.0, config)
    error = only_remote_error(feed(conn, data))
    status, headers, body = parse_response(conn.data_to_send(0.0))
    assert status == error.http_status
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert body.startswith(f"{status} ".encode())
    assert conn.finished
    return status, headers


# --- routing -------------------------------------------------------------------------------


def test_plain_get_is_a_request() -> None:
    conn = ServerConnection(0.0)
    assert feed(conn, GET) == [Request("GET", "/page", (("host", "x"),), b"")]
    assert conn.state is State.REQUEST_RECEIVED


def test_post_body_with_content_length_and_chunked() -> None:
    conn = ServerConnection(0.0)
    [event] = feed(conn, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert isinstance(event, Request)
    assert (event.method, event.body) == ("POST", b"hello")
    assert event.header("Content-Length") == "5"
    assert event.header("missing") is None
    conn.respond(204, now=0.0)
    conn.data_to_send(0.0)
    chunked = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    [event] = feed(conn, chunked)
    assert isinstance(event, Request)
    assert event.body == b"abcde"


@pytest.mark.parametrize(
    ("extra", "last_id"),
    [("", None), ("Last-Event-ID: 42\r\n", "42")],
)
def test_event_stream_accept_is_an_sse_request(extra: str, last_id: str | None) -> None:
    conn = ServerConnection(0.0)
    data = f"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n"
    [event] = feed(conn, data.encode())
    assert isinstance(event, SseRequest)
    assert (event.method, event.target, event.last_event_id) == ("GET", "/events", last_id)
    assert event.header("accept") == "text/event-stream"


def test_event_stream_among_several_accepted_types() -> None:
    conn = ServerConnection(0.0)
    data = b"GET / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
    data += b"Accept: text/event-stream\r\n\r\n"
    [event] = feed(conn, data)
    assert isinstance(event, SseRequest)


def test_websocket_upgrade_with_offered_subprotocols() -> None:
    conn = ServerConnection(0.0)
    data = WS_HEAD + "Sec-WebSocket-Protocol: a, b,\r\nSec-WebSocket-Protocol: c\r\n\r\n"
    [event] = feed(conn, data.encode())
    assert isinstance(event, WebSocketRequest)
    assert event.target == "/ws"
    assert event.subprotocols == ("a", "b", "c")
    assert event.header("sec-websocket-key") == KEY


def test_accepting_a_websocket_answers_101_with_the_accept_token() -> None:
    conn = ServerConnection(0.0)
    feed(conn, WS_HEAD.encode() + b"Sec-WebSocket-Protocol: chat\r\n\r\n")
    conn.accept_websocket("chat", (("x-extra", "1"),), now=0.0)
    status, headers, _ = parse_response(conn.data_to_send(0.0))
    assert status == 101
    assert headers["sec-websocket-protocol"] == "chat"
    assert headers["x-extra"] == "1"
    digest = hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    assert headers["sec-websocket-accept"] == base64.b64encode(digest).decode()  # RFC 6455
    assert conn.state is State.WEBSOCKET
    assert conn.subprotocol == "chat"


# --- answers and keep-alive ----------------------------------------------------------------


def test_respond_then_a_second_request_on_the_same_connection() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    conn.respond(200, (("content-type", "text/plain"),), b"hi", now=1.0)
    status, headers, body = parse_response(conn.data_to_send(1.0))
    assert (status, headers["content-type"], headers["content-length"], body) == (
        200,
        "text/plain",
        "2",
        b"hi",
    )
    assert conn.state is State.AWAITING_REQUEST
    assert not conn.finished
    [event] = feed(conn, b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n", 2.0)
    assert isinstance(event, Request)
    assert event.target == "/two"
    conn.respond(404, now=2.0)
    status, _, body = parse_response(conn.data_to_send(2.0))
    assert (status, body) == (404, b"")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ],
)
def test_a_non_persistent_request_finishes_after_the_answer(request_bytes: bytes) -> None:
    conn = ServerConnection(0.0)
    assert len(feed(conn, request_bytes)) == 1
    conn.respond(200, body=b"bye", now=0.0)
    assert parse_response(conn.data_to_send(0.0))[2] == b"bye"
    assert conn.finished
    [closed] = drain(conn)
    assert isinstance(closed, ConnectionClosed)
    assert closed.code is None
    assert not conn.wants_data


def test_pipelined_requests_are_answered_in_order() -> None:
    conn = ServerConnection(0.0)
    [first] = feed(conn, GET + b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(first, Request)
    assert first.target == "/page"
    assert conn.next_event() is None  # the state never runs ahead of the answer
    conn.respond(200, now=0.0)
    [second] = drain(conn)
    assert isinstance(second, Request)
    assert second.target == "/second"


def test_bytes_pipelined_while_answering_are_bounded() -> None:
    conn = ServerConnection(0.0, ConnectionConfig(limits=Limits(max_buffered_inbound=40)))
    feed(conn, GET)
    assert conn.wants_data
    conn.receive_data(GET + GET, 0.0)  # 60 bytes held while the first is answered
    assert not conn.wants_data
    conn.respond(200, now=0.0)
    assert conn.wants_data
    assert len(drain(conn)) == 1


def test_expect_100_continue_gets_a_100_before_the_body() -> None:
    conn = ServerConnection(0.0)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    assert feed(conn, head) == []
    assert conn.data_to_send(0.0) == b"HTTP/1.1 100 \r\n\r\n"
    [event] = feed(conn, b"abc")
    assert isinstance(event, Request)
    assert event.body == b"abc"


def test_refusing_an_upgrade_with_respond_keeps_the_connection() -> None:
    conn = ServerConnection(0.0)
    feed(conn, WS_REQUEST)
    conn.respond(403, body=b"no", now=0.0)
    assert parse_response(conn.data_to_send(0.0))[0] == 403
    assert conn.state is State.AWAITING_REQUEST
    assert len(feed(conn, GET)) == 1


def test_streamed_body_response_is_chunked_and_keeps_alive() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    conn.start_response(200, (("content-type", "text/plain"),), now=0.0)
    assert conn.state is State.STREAMING
    conn.open_stream(1, 0.0)
    assert conn.send(1, b"ab", 0.0) == 1
    assert conn.send(1, "cd\u00e9", 0.0) == 2
    with pytest.raises(LocalProtocolError, match="SseEvent"):
        conn.send(1, SseEvent("x"), 0.0)
    conn.end_stream(1, 0.0)
    conn.end_response(0.0)
    out = conn.data_to_send(0.0)
    status, headers, body = parse_response(out)
    assert (status, headers["transfer-encoding"]) == (200, "chunked")
    assert body == b"6\r\nabcd\xc3\xa9\r\n0\r\n\r\n"  # one batch, one chunk
    assert state_of(conn) is State.AWAITING_REQUEST
    finished = drain(conn)
    assert [getattr(e, "stream_id", None) for e in finished] == [1]  # control stream hidden
    [event] = feed(conn, GET)
    assert isinstance(event, Request)


def test_close_on_a_plain_connection_finishes_it() -> None:
    conn = ServerConnection(0.0)
    conn.close(0.0)
    assert conn.finished
    assert drain(conn) == [ConnectionClosed(None, "closed by the application")]
    conn.close(1.0)  # again: nothing more
    assert drain(conn) == []
    conn.receive_data(GET, 1.0)
    conn.receive_eof(1.0)
    assert drain(conn) == []
    assert conn.data_to_send(1.0) == b""


# --- limits and malformed requests ---------------------------------------------------------


def _head_of_size(size: int) -> bytes:
    base = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
    pad = size - len(base)
    assert pad >= 0
    return base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * pad)


@pytest.mark.parametrize("piece", [1, 7, 10_000])
def test_header_block_over_the_limit_is_431_however_it_arrives(piece: int) -> None:
    config = ConnectionConfig(limits=Limits(max_header_bytes=100))
    data = _head_of_size(101)
    conn = ServerConnection(0.0, config)
    events: list[Event] = []
    for start in range(0, len(data), piece):
        events += feed(conn, data[start : start + piece])
    error = only_remote_error(events)
    assert error.http_status == 431
    assert error.message == "request head larger than 100 bytes"
    status, headers, _ = parse_response(conn.data_to_send(0.0))
    assert (status, headers["connection"]) == (431, "close")


def test_header_block_at_the_limit_is_accepted() -> None:
    config = ConnectionConfig(limits=Limits(max_header_bytes=100))
    conn = ServerConnection(0.0, config)
    [event] = feed(conn, _head_of_size(100))
    assert isinstance(event, Request)


def test_header_limit_applies_to_each_keep_alive_request() -> None:
    config = ConnectionConfig(limits=Limits(max_header_bytes=100))
    conn = ServerConnection(0.0, config)
    [first] = feed(conn, _head_of_size(100) + _head_of_size(101))
    assert isinstance(first, Request)
    conn.respond(200, now=0.0)
    error = only_remote_error(drain(conn))
    assert error.http_status == 431


def test_body_over_the_limit_by_content_length_is_413() -> None:
    config = ConnectionConfig(limits=Limits(max_body_bytes=10))
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
    assert refused(head, config)[0] == 413
    conn = ServerConnection(0.0, config)
    [event] = feed(conn, head.replace(b"11", b"10") + b"0123456789")
    assert isinstance(event, Request)


def test_chunked_body_over_the_limit_is_413() -> None:
    config = ConnectionConfig(limits=Limits(max_body_bytes=10))
    data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    data += b"6\r\naaaaaa\r\n5\r\naaaaa\r\n0\r\n\r\n"
    assert refused(data, config)[0] == 413


def test_100_continue_with_too_large_a_body_gets_413_not_100() -> None:
    config = ConnectionConfig(limits=Limits(max_body_bytes=10))
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\nExpect: 100-continue\r\n\r\n"
    conn = ServerConnection(0.0, config)
    assert only_remote_error(feed(conn, head)).http_status == 413
    assert parse_response(conn.data_to_send(0.0))[0] == 413


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
        b"\r\n",
    ],
)
def test_malformed_requests_are_400(garbage: bytes) -> None:
    assert refused(garbage)[0] == 400


def test_garbage_after_a_good_request_is_refused_at_the_next_cycle() -> None:
    conn = ServerConnection(0.0)
    [event] = feed(conn, GET + b"\x00\x01\x02 nonsense\r\n\r\n")
    assert isinstance(event, Request)
    conn.respond(200, now=0.0)
    assert parse_response(conn.data_to_send(0.0))[0] == 200
    assert only_remote_error(drain(conn)).http_status == 400


def test_a_broken_chunked_body_after_the_head_closes_with_an_error() -> None:
    conn = ServerConnection(0.0)
    data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    assert only_remote_error(feed(conn, data)).http_status == 400
    assert parse_response(conn.data_to_send(0.0))[0] == 400


# --- framing that could hide a request (RFC 9112 6.1, 2.3, 7.1) -------------------------

SMUGGLED = b"GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_ambiguous_body_framing_is_400_and_hides_no_request(head: bytes) -> None:
    """Content-Length with Transfer-Encoding (or chunked HTTP/1.0): refused and closed, so
    a request inside the body is never read as the next one."""
    conn = ServerConnection(0.0)
    error = only_remote_error(feed(conn, head + b"0\r\n\r\n" + SMUGGLED))
    assert error.http_status == 400
    status, headers, rest = parse_response(conn.data_to_send(0.0))
    assert (status, headers["connection"]) == (400, "close")
    assert b"HTTP/1.1" not in rest
    assert conn.finished
    assert drain(conn) == []


@pytest.mark.parametrize("version", [b"9.9", b"2.0", b"0.9"])
def test_unsupported_http_version_is_505(version: bytes) -> None:
    status, _ = refused(b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")
    assert status == 505


@pytest.mark.parametrize("request_line", [b"GET /page HTTP/1.0\r\n", b"GET /page HTTP/1.2\r\n"])
def test_other_http_1_minor_versions_are_served(request_line: bytes) -> None:
    """RFC 9110 6.2: a later 1.x is read as 1.1, an earlier one as itself."""
    conn = ServerConnection(0.0)
    [event] = feed(conn, request_line + b"Host: x\r\n\r\n")
    assert isinstance(event, Request)


@pytest.mark.parametrize(
    ("size", "status"),
    [(b"ffffffffffffffffffff", 400), (b"10000000000000000", 400), (b"b", 413)],
)
@pytest.mark.parametrize("data", [b"", b"abc"])
def test_a_chunk_larger_than_allowed_is_refused_at_its_header(
    size: bytes, status: int, data: bytes
) -> None:
    """A chunk size past 64 bits (or past the body limit) is answered as soon as its header
    is read, not after the handshake timeout."""
    config = ConnectionConfig(limits=Limits(max_body_bytes=10))
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert refused(head + size + b"\r\n" + data, config)[0] == status


def test_chunks_within_the_limit_still_wait_for_the_rest() -> None:
    config = ConnectionConfig(limits=Limits(max_body_bytes=10))
    conn = ServerConnection(0.0, config)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert feed(conn, head + b"4\r\nab") == []
    assert feed(conn, b"cd\r\n6\r\n") == []
    [event] = feed(conn, b"efghij\r\n0\r\n\r\n")
    assert isinstance(event, Request)
    assert event.body == b"abcdefghij"


# --- WebSocket handshakes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (WS_REQUEST.replace(b"GET", b"POST"), 400),
        (WS_REQUEST.replace(f"Sec-WebSocket-Key: {KEY}\r\n".encode(), b""), 400),
        (WS_REQUEST.replace(KEY.encode(), b"c2hvcnQ="), 400),  # 5 bytes, not 16
        (WS_REQUEST.replace(KEY.encode(), b"!!not base64!!"), 400),
        (WS_REQUEST.replace(KEY.encode(), b"\xe9" * 24), 400),  # not ASCII (found by fuzzing)
        (WS_REQUEST.replace(b"Connection: Upgrade", b"Connection: keep-alive"), 400),
        (WS_REQUEST.replace(b"Version: 13", b"Version: 8"), 426),
        (WS_REQUEST.replace(b"Sec-WebSocket-Version: 13\r\n", b""), 426),
    ],
)
def test_bad_websocket_handshakes(data: bytes, status: int) -> None:
    got, headers = refused(data)
    assert got == status
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
    else:
        assert "sec-websocket-version" not in headers


# --- timers --------------------------------------------------------------------------------


def test_partial_request_gets_408_exactly_at_the_handshake_deadline() -> None:
    config = ConnectionConfig(timeouts=Timeouts(handshake=2.5))
    conn = ServerConnection(3.0, config)
    feed(conn, b"GET / HTTP/1.1\r\nHo", 4.0)
    assert conn.next_deadline() == 5.5  # cycle start (the connection) + handshake
    conn.handle_timer(5.49)
    assert drain(conn) == []
    assert conn.data_to_send(5.49) == b""
    conn.handle_timer(5.5)
    error = only_remote_error(drain(conn))
    assert error.http_status == 408
    assert parse_response(conn.data_to_send(5.5))[0] == 408
    assert conn.next_deadline() is None


def test_no_bytes_at_all_closes_quietly_at_the_handshake_deadline() -> None:
    conn = ServerConnection(0.0)
    assert conn.next_deadline() == 10.0
    conn.handle_timer(10.0)
    assert drain(conn) == [ConnectionClosed(None, "no request in time")]
    assert conn.data_to_send(10.0) == b""
    assert conn.finished


def test_idle_keep_alive_connection_closes_quietly() -> None:
    config = ConnectionConfig(timeouts=Timeouts(idle=30.0))
    conn = ServerConnection(0.0, config)
    feed(conn, GET)
    conn.respond(200, now=2.0)
    conn.data_to_send(2.0)
    assert conn.next_deadline() == 32.0
    conn.handle_timer(31.9)
    assert not conn.finished
    conn.handle_timer(32.0)
    assert drain(conn) == [ConnectionClosed(None, "idle keep-alive connection")]
    assert conn.data_to_send(32.0) == b""


def test_a_keep_alive_request_is_timed_from_its_first_byte() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    conn.respond(200, now=1.0)
    feed(conn, b"GET / HTTP/1.1\r\n", 200.0)
    assert conn.next_deadline() == 210.0  # not 1.0 + 10: the quiet time was keep-alive idle
    feed(conn, b"Host: x\r\n", 205.0)
    assert conn.next_deadline() == 210.0  # more bytes do not move it (slowloris)
    conn.handle_timer(210.0)
    assert only_remote_error(drain(conn)).http_status == 408


def test_disabled_timers_have_no_deadline() -> None:
    config = ConnectionConfig(timeouts=Timeouts(handshake=None, idle=None, sse_heartbeat=None))
    conn = ServerConnection(0.0, config)
    assert conn.next_deadline() is None
    conn.handle_timer(1e9)
    feed(conn, b"GET / HTTP/1.1\r\n")
    assert conn.next_deadline() is None
    conn.handle_timer(1e9)
    assert not conn.finished
    feed(conn, b"Host: x\r\n\r\n")
    conn.respond(200, now=1.0)
    assert conn.next_deadline() is None
    conn.handle_timer(1e9)
    assert not conn.finished


def test_no_deadline_while_the_application_owes_an_answer() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    assert conn.next_deadline() is None
    conn.handle_timer(1e9)
    assert conn.state is State.REQUEST_RECEIVED


# --- end of file from the client -----------------------------------------------------------


def test_eof_before_any_byte_closes_quietly() -> None:
    conn = ServerConnection(0.0)
    conn.receive_eof(1.0)
    assert drain(conn) == [ConnectionClosed(None, "the client closed the connection")]
    assert conn.data_to_send(1.0) == b""


@pytest.mark.parametrize(
    "partial",
    [b"GET / HTTP/1.1\r\nHo", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab"],
)
def test_eof_mid_request_is_a_remote_error(partial: bytes) -> None:
    conn = ServerConnection(0.0)
    feed(conn, partial)
    conn.receive_eof(1.0)
    conn.receive_eof(1.0)  # twice is harmless
    assert only_remote_error(drain(conn)).http_status == 400
    assert conn.finished


def test_eof_while_the_answer_is_owed_or_streaming() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    conn.receive_eof(1.0)
    assert drain(conn) == [ConnectionClosed(None, "the client went away")]
    with pytest.raises(LocalProtocolError):
        conn.respond(200, now=1.0)

    conn = ServerConnection(0.0)
    feed(conn, SSE_GET)
    conn.accept_sse(now=0.0)
    conn.receive_eof(1.0)
    assert drain(conn) == [ConnectionClosed(None, "the client went away")]
    assert conn.finished


def test_eof_after_a_keep_alive_answer_closes_quietly() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    conn.respond(200, now=0.0)
    conn.receive_eof(1.0)
    assert drain(conn) == [ConnectionClosed(None, "the client closed the connection")]


# --- API misuse ----------------------------------------------------------------------------


def test_respond_twice_is_a_local_error() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    conn.respond(200, now=0.0)
    with pytest.raises(LocalProtocolError, match="no request is waiting"):
        conn.respond(200, now=0.0)


def test_answering_with_no_request_is_a_local_error() -> None:
    conn = ServerConnection(0.0)
    answers: list[Callable[[], None]] = [
        lambda: conn.respond(200, now=0.0),
        lambda: conn.start_response(200, now=0.0),
        lambda: conn.accept_sse(now=0.0),
        lambda: conn.accept_websocket(now=0.0),
    ]
    for answer in answers:
        with pytest.raises(LocalProtocolError):
            answer()


def test_sending_before_streaming_is_a_local_error() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    with pytest.raises(LocalProtocolError, match="no open stream"):
        conn.open_stream(1, 0.0)
    with pytest.raises(LocalProtocolError, match="no open stream"):
        conn.send(1, b"x", 0.0)
    with pytest.raises(LocalProtocolError, match="no open stream"):
        conn.end_stream(1, 0.0)
    with pytest.raises(LocalProtocolError, match="no open stream"):
        conn.fail_stream(1, "internal", "x", 0.0)
    with pytest.raises(LocalProtocolError, match="no open stream"):
        conn.resume_stream(1, 0, 0.0)
    with pytest.raises(LocalProtocolError, match="no streamed response"):
        conn.end_response(0.0)


def test_negative_stream_id_is_a_local_error() -> None:
    conn = ServerConnection(0.0)
    feed(conn, SSE_GET)
    conn.accept_sse(now=0.0)
    with pytest.raises(LocalProtocolError, match="stream ids"):
        conn.open_stream(-1, 0.0)


def test_accept_websocket_on_a_plain_request_is_a_local_error() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    with pytest.raises(LocalProtocolError, match="not a WebSocket upgrade"):
        conn.accept_websocket(now=0.0)
    assert conn.state is State.REQUEST_RECEIVED  # nothing was sent; it can still answer
    conn.respond(400, now=0.0)
    assert parse_response(conn.data_to_send(0.0))[0] == 400


def test_accept_websocket_with_a_subprotocol_not_offered_is_a_local_error() -> None:
    conn = ServerConnection(0.0)
    feed(conn, WS_HEAD.encode() + b"Sec-WebSocket-Protocol: chat\r\n\r\n")
    with pytest.raises(LocalProtocolError, match="did not offer subprotocol 'mcp'"):
        conn.accept_websocket("mcp", now=0.0)
    assert conn.data_to_send(0.0) == b""


def test_an_invalid_response_is_a_local_error() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    with pytest.raises(LocalProtocolError, match="invalid response"):
        conn.respond(99, now=0.0)
    with pytest.raises(LocalProtocolError, match="invalid response"):
        conn.start_response(200, (("x-bad", "line\r\nbreak"),), now=0.0)
    with pytest.raises(LocalProtocolError, match="invalid response"):
        conn.accept_sse((("x-bad", "\u20ac"),), now=0.0)  # not latin-1
    conn.respond(200, now=0.0)  # nothing was sent: it can still answer
    assert parse_response(conn.data_to_send(0.0))[0] == 200


def test_head_request_gets_the_length_but_no_body() -> None:
    conn = ServerConnection(0.0)
    feed(conn, b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.respond(200, body=b"hello", now=0.0)
    status, headers, rest = parse_response(conn.data_to_send(0.0))
    assert (status, headers["content-length"], rest) == (200, "5", b"")
    assert conn.state is State.AWAITING_REQUEST
    assert len(feed(conn, GET)) == 1


def test_streamed_answer_to_head_writes_no_body() -> None:
    conn = ServerConnection(0.0)
    feed(conn, b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.start_response(200, now=0.0)
    conn.open_stream(1, 0.0)
    conn.send(1, b"abc", 0.0)
    conn.end_response(0.0)
    status, _, rest = parse_response(conn.data_to_send(0.0))
    assert (status, rest) == (200, b"")
    assert conn.state is State.AWAITING_REQUEST


def test_connect_is_refused_with_405() -> None:
    data = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    status, _ = refused(data)
    assert status == 405


def test_a_body_on_a_bodiless_status_is_a_local_error() -> None:
    conn = ServerConnection(0.0)
    feed(conn, GET)
    with pytest.raises(LocalProtocolError, match="Content-Length"):
        conn.respond(204, body=b"x", now=0.0)


def test_accept_websocket_with_an_invalid_header_is_a_local_error() -> None:
    conn = ServerConnection(0.0)
    feed(conn, WS_REQUEST)
    with pytest.raises(LocalProtocolError, match="invalid response"):
        conn.accept_websocket(headers=(("x-bad", "a\r\nb"),), now=0.0)
    assert conn.state is State.REQUEST_RECEIVED
    assert conn.data_to_send(0.0) == b""
