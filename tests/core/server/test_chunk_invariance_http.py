"""The same bytes split anywhere give the same events: the HTTP front and the SSE client."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from diaproto.client import SseClientConnection
from diaproto.config import ConnectionConfig, Limits
from diaproto.events import (
    ConnectionClosed,
    Event,
    RemoteError,
    Request,
    SseRequest,
    WebSocketMessage,
    WebSocketRequest,
)
from diaproto.server import ServerConnection, State
from diaproto.sse import SseEvent
from diaproto.testing.strategies import splits, sse_events

#: Small limits, so that generated requests fall on both sides of them.
CONFIG = ConnectionConfig(limits=Limits(max_header_bytes=200, max_body_bytes=100))
KEY = base64.b64encode(b"fedcba9876543210").decode()

Normal = tuple[object, ...] | Event


def normal(event: Event) -> Normal:
    """Events compare by value; a RemoteError's exception by its fields."""
    if isinstance(event, RemoteError):
        error = event.error
        return ("RemoteError", type(error), error.message, error.http_status, event.fatal)
    return event


# --- requests ------------------------------------------------------------------------------

paths = st.from_regex(r"/[a-z0-9/]{0,12}", fullmatch=True)
bodies = st.binary(max_size=20) | st.binary(min_size=90, max_size=130)  # around the limit


@st.composite
def plain_get(draw: st.DrawFn) -> bytes:
    pad = draw(st.integers(0, 200))  # some heads pass the 200-byte limit
    return f"GET {draw(paths)} HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * pad}\r\n\r\n".encode()


@st.composite
def post_with_length(draw: st.DrawFn) -> bytes:
    body = draw(bodies)
    expect = draw(st.booleans())
    head = f"POST {draw(paths)} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    if expect:
        head += "Expect: 100-continue\r\n"
    return head.encode() + b"\r\n" + body


@st.composite
def post_chunked(draw: st.DrawFn) -> bytes:
    pieces = draw(st.lists(st.binary(min_size=1, max_size=50), max_size=4))
    data = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in pieces:
        data += b"%x\r\n%s\r\n" % (len(piece), piece)
    return data + b"0\r\n\r\n"


@st.composite
def sse_get(draw: st.DrawFn) -> bytes:
    last_id = draw(st.none() | st.from_regex(r"[0-9]{1,6}", fullmatch=True))
    head = f"GET {draw(paths)} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
    if last_id is not None:
        head += f"Last-Event-ID: {last_id}\r\n"
    return (head + "\r\n").encode()


@st.composite
def upgrade(draw: st.DrawFn) -> bytes:
    protocols = draw(st.lists(st.sampled_from(["diaproto.v1", "mcp", "chat"]), max_size=3))
    head = (
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if protocols:
        head += f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n"
    return (head + "\r\n").encode()


any_request = st.one_of(plain_get(), post_with_length(), post_chunked(), sse_get(), upgrade())


def masked_text_frame(text: str, mask: bytes) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def run_server(pieces: Sequence[bytes], *, accept_upgrade: bool) -> tuple[list[Normal], bytes]:
    """Feed the pieces one at a time, answering every request as it comes; the events
    and every byte the server wrote."""
    server = ServerConnection(0.0, CONFIG)
    events: list[Normal] = []
    out = bytearray()
    for piece in pieces:
        server.receive_data(piece, 0.0)
        while (event := server.next_event()) is not None:
            events.append(normal(event))
            if isinstance(event, WebSocketRequest):
                if accept_upgrade:
                    server.accept_websocket(now=0.0)
                else:
                    server.respond(403, now=0.0)
            elif isinstance(event, SseRequest):
                server.accept_sse(now=0.0)
                server.open_stream(1, 0.0)
                server.send(1, event.last_event_id or "none", 0.0)
                server.end_response(0.0)
                out += server.data_to_send(0.0)  # the head and the retry block
                out += server.data_to_send(1.0)  # the data, after the linger
                assert server.state is not State.STREAMING
            elif isinstance(event, Request):
                server.respond(200, body=event.method.encode() + event.body, now=0.0)
            out += server.data_to_send(1.0)
        out += server.data_to_send(1.0)
    server.receive_eof(2.0)
    events.extend(normal(e) for e in iter(server.next_event, None))
    out += server.data_to_send(2.0)
    return events, bytes(out)


@settings(max_examples=150)
@given(st.data(), st.lists(any_request, min_size=1, max_size=4))
def test_pipelined_requests_split_anywhere(data: st.DataObject, requests: list[bytes]) -> None:
    stream = b"".join(requests)
    expected = run_server([stream], accept_upgrade=False)
    pieces = data.draw(splits(stream, max_pieces=24))
    assert run_server(pieces, accept_upgrade=False) == expected
    assert run_server(list(_bytewise(stream)), accept_upgrade=False) == expected


@settings(max_examples=60)
@given(st.data(), any_request, st.text(max_size=20), st.binary(min_size=4, max_size=4))
def test_upgrade_then_frames_split_anywhere(
    data: st.DataObject, first: bytes, text: str, mask: bytes
) -> None:
    """An accepted upgrade: bytes after the request head reach the WebSocket either way."""
    stream = first + _upgrade_request() + masked_text_frame(text, mask)
    events, out = run_server([stream], accept_upgrade=True)
    assert WebSocketMessage(text) in events or any(
        isinstance(e, tuple) and e[0] == "RemoteError" for e in events
    )
    pieces = data.draw(splits(stream, max_pieces=24))
    assert run_server(pieces, accept_upgrade=True) == (events, out)


def _upgrade_request() -> bytes:
    return (
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# --- the SSE client ------------------------------------------------------------------------


def server_response(events: list[SseEvent], chunks: list[bytes], last_id: str | None) -> bytes:
    """Everything a real server writes for an SSE response, request to end."""
    client = SseClientConnection(0.0, "localhost", "/s", last_event_id=last_id)
    server = ServerConnection(0.0)
    server.receive_data(client.data_to_send(0.0), 0.0)
    assert isinstance(server.next_event(), SseRequest)
    server.accept_sse(now=0.0)
    server.open_stream(1, 0.0)
    for n, event in enumerate(events):
        server.send(1, event, 0.0)
        if n < len(chunks):
            server.send(1, chunks[n], 0.0)
    server.end_stream(1, 0.0)
    server.end_response(0.0)
    out = bytearray()
    now = 0.0
    while server.state is State.STREAMING:
        out += server.data_to_send(now)
        now += 1.0
        server.handle_timer(now)
    return bytes(out)


def run_client(
    pieces: Sequence[bytes], last_id: str | None
) -> tuple[list[Normal], str | None, int | None]:
    client = SseClientConnection(0.0, "localhost", "/s", last_event_id=last_id)
    events: list[Normal] = []
    for piece in pieces:
        client.receive_data(piece, 0.0)
        events.extend(normal(e) for e in iter(client.next_event, None))
    client.receive_eof(1.0)
    events.extend(normal(e) for e in iter(client.next_event, None))
    return events, client.last_event_id, client.retry


@settings(max_examples=100)
@given(
    st.data(),
    st.lists(sse_events, max_size=6),
    st.lists(st.binary(max_size=64), max_size=6),
    st.none() | st.from_regex(r"[0-9]{1,4}", fullmatch=True),
)
def test_sse_client_split_anywhere(
    data: st.DataObject, events: list[SseEvent], chunks: list[bytes], last_id: str | None
) -> None:
    response = server_response(events, chunks, last_id)
    expected = run_client([response], last_id)
    assert expected[0][-1] == ConnectionClosed(None, "the server ended the stream")
    pieces = data.draw(splits(response, max_pieces=32))
    assert run_client(pieces, last_id) == expected


@settings(max_examples=100)
@given(st.data(), st.binary(max_size=400))
def test_sse_client_split_anywhere_on_garbage(data: st.DataObject, body: bytes) -> None:
    """Whatever the body, the client reaches the same events however it is cut."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
    response = head + body
    expected = run_client([response], None)
    pieces = data.draw(splits(response, max_pieces=32))
    assert run_client(pieces, None) == expected
