"""Targets for the HTTP front of the server and for the SSE client, fed a peer's bytes."""

from __future__ import annotations

from diaproto.client import SseClientConnection
from diaproto.config import ConnectionConfig, Limits
from diaproto.events import ConnectionClosed, Request, SseRequest, WebSocketRequest
from diaproto.server import ServerConnection, State
from diaproto.sse import SseEvent
from fuzz.harness import target

#: Small limits, so the fuzzer reaches them with short inputs.
_CONFIG = ConnectionConfig(limits=Limits(max_header_bytes=512, max_body_bytes=256))

_HTTP_SEEDS = [
    b"\x05GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x20POST /m HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    b"\x10POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"\x08GET /e HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: 4\r\n\r\n",
    b"\x30GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n\r\n\x81\x85abcd\x09\x07\x0f\x08\x0e",
    b"\x00GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
]


def _answer(server: ServerConnection, event: object, now: float) -> None:
    """Answer a request so the machine keeps moving; the kind of answer varies with it."""
    if isinstance(event, WebSocketRequest):
        if event.subprotocols:
            server.accept_websocket(event.subprotocols[0], now=now)
        else:
            server.respond(403, body=b"no", now=now)
    elif isinstance(event, SseRequest):
        server.accept_sse(now=now)
        server.open_stream(1, now)
        server.send(1, b"chunk", now)
        server.send(1, SseEvent("x", event="e", id=event.last_event_id), now)
        server.end_stream(1, now)
        server.end_response(now)
    elif isinstance(event, Request):
        if event.method == "POST":
            server.start_response(200, now=now)
            server.open_stream(1, now)
            server.send(1, event.body, now)
            server.end_stream(1, now)
            server.end_response(now)
        else:
            server.respond(200, body=event.target.encode(), now=now)


@target("http_front", seeds=_HTTP_SEEDS)
def http_front(data: bytes) -> None:
    """Arbitrary bytes from a client, cut in two at a point the first byte picks."""
    if not data:
        return
    cut = data[0] % len(data) + 1
    body = data[1:]
    server = ServerConnection(0.0, _CONFIG)
    now = 0.0
    closed = 0
    for piece in (body[: cut - 1], body[cut - 1 :]):
        server.receive_data(piece, now)
        for _ in range(10_000):
            event = server.next_event()
            if event is None:
                break
            if isinstance(event, ConnectionClosed):
                closed += 1
            if server.state is State.REQUEST_RECEIVED:
                _answer(server, event, now)
            server.data_to_send(now)
        else:
            raise AssertionError("next_event never ran dry")
        now += 1.0
        server.data_to_send(now)
    server.receive_eof(now)
    while (event := server.next_event()) is not None:
        closed += isinstance(event, ConnectionClosed)
    server.data_to_send(now)
    deadline = server.next_deadline()
    if deadline is not None:
        server.handle_timer(deadline)
        while (event := server.next_event()) is not None:
            closed += isinstance(event, ConnectionClosed)
        server.data_to_send(deadline)
    assert closed <= 1, "ConnectionClosed is reported once"


_SSE_SEEDS = [
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    b"d\r\nretry: 2000\n\n\r\n11\r\nid: 1\ndata: AAE=\n\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\xef\xbb\xbfdata: a\r\n\r\n",
    b"HTTP/1.1 503 Busy\r\ncontent-length: 4\r\n\r\nbusy",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
]


@target("sse_client", seeds=_SSE_SEEDS)
def sse_client(data: bytes) -> None:
    """Arbitrary bytes as the server's answer to an SSE request, then end of file."""
    config = ConnectionConfig(limits=Limits(max_message_bytes=128))
    client = SseClientConnection(0.0, "localhost", "/s", last_event_id="0", config=config)
    client.data_to_send(0.0)
    half = len(data) // 2
    closed = 0
    for piece in (data[:half], data[half:]):
        client.receive_data(piece, 1.0)
        while (event := client.next_event()) is not None:
            closed += isinstance(event, ConnectionClosed)
    client.receive_eof(2.0)
    while (event := client.next_event()) is not None:
        closed += isinstance(event, ConnectionClosed)
    deadline = client.next_deadline()
    if deadline is not None:
        client.handle_timer(deadline)
        while (event := client.next_event()) is not None:
            closed += isinstance(event, ConnectionClosed)
    assert closed == 1 or not client.finished, "a finished client said so exactly once"
    assert client.finished, "end of file always ends the client"
