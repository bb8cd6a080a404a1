"""The access log (apps/serve/access_log.py) and the log formats (apps/logs.py): a line per
request, WebSocket session, WebSocket stream and SSE stream, as text and as JSON, with the
request id in the service's own lines; the core's byte and status counts behind them."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import connect_sse
from support import fast_source, wait_until
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from diaproto import adapters
from diaproto.apps import logs
from diaproto.apps.serve.access_log import AccessLog
from diaproto.apps.serve.app import DiaService
from diaproto.runtime import ServerHandle

LIMIT = 60.0


@pytest.fixture
def server() -> Iterator[ServerHandle]:
    handle = adapters.start_in_thread("asyncio", AccessLog(DiaService(fast_source())))
    try:
        yield handle
    finally:
        assert handle.stop()


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="diaproto.access")
    caplog.handler.addFilter(logs.RequestIdFilter())
    return caplog


def lines(caplog: pytest.LogCaptureFixture, **wanted: object) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "diaproto.access"
        and all(getattr(record, key, None) == value for key, value in wanted.items())
    ]


def one(caplog: pytest.LogCaptureFixture, **wanted: object) -> logging.LogRecord:
    wait_until(lambda: bool(lines(caplog, **wanted)), f"an access line {wanted}", limit=LIMIT)
    return lines(caplog, **wanted)[0]


def as_json(record: logging.LogRecord) -> dict[str, object]:
    entry = json.loads(logs.JsonFormatter().format(record))
    assert isinstance(entry, dict)
    return entry


def test_a_get(server: ServerHandle, access: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{server.port}/healthz?token=s3cret"
    answer = httpx.get(url, headers={"x-request-id": "req-42"}, timeout=LIMIT)
    record = one(access, path="/healthz")
    assert record.request_id == "req-42"  # type: ignore[attr-defined]
    entry = as_json(record)
    assert entry["method"] == "GET" and entry["status"] == 200 and entry["kind"] == "http"
    assert isinstance(entry["bytes"], int) and entry["bytes"] > len(answer.content)  # + head
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
    assert str(entry["peer"]).startswith("127.0.0.1:")
    assert entry["logger"] == "diaproto.access" and entry["level"] == "INFO"
    assert {"timestamp", "message", "request_id"} <= set(entry)
    assert "s3cret" not in json.dumps(entry)  # the query is never logged
    text = logging.Formatter(logs.TEXT_FORMAT).format(record)
    assert '"GET /healthz" 200' in text and text.endswith("[req-42]")


def test_a_refusal_and_the_services_own_lines(
    server: ServerHandle, access: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{server.port}/v1/stream?text=hi"
    answer = httpx.get(url, headers={"origin": "https://elsewhere.example"}, timeout=LIMIT)
    assert answer.status_code == 403
    record = one(access, path="/v1/stream", status=403)
    rid = record.request_id  # type: ignore[attr-defined]
    assert len(rid) == 12  # made up: the client gave none
    warned = [r for r in access.records if r.name == "diaproto.serve" and "refused" in r.message]
    assert warned and warned[0].request_id == rid  # type: ignore[attr-defined]


def test_a_refused_upgrade_is_logged_at_once_on_a_connection_kept_open(
    server: ServerHandle, access: pytest.LogCaptureFixture
) -> None:
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: diaproto.v1\r\n"
        b"Origin: https://elsewhere.example\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT) as sock:
        sock.sendall(upgrade)
        assert sock.recv(100).startswith(b"HTTP/1.1 403")
        # Logged while the connection stays open, not at its next request or its close.
        record = one(access, path="/ws", status=403)
    assert record.kind == "websocket"  # type: ignore[attr-defined]


def test_a_request_the_core_refuses(server: ServerHandle, access: pytest.LogCaptureFixture) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    record = one(access, status=400)
    assert (record.method, record.path) == ("-", "-")  # type: ignore[attr-defined]


def test_a_websocket_session_and_its_streams(
    server: ServerHandle, access: pytest.LogCaptureFixture
) -> None:
    url = f"ws://127.0.0.1:{server.port}/ws"
    with connect(url, subprotocols=[Subprotocol("diaproto.v1")], proxy=None) as ws:
        for stream in (1, 3):
            ws.send(json.dumps({"type": "open", "stream": stream, "text": "Hi.", "voice": "S1"}))
            received = 0
            while True:
                message = ws.recv(timeout=LIMIT)
                if isinstance(message, bytes):
                    received += len(message)
                elif json.loads(message)["type"] in ("end", "error"):
                    assert json.loads(message)["type"] == "end"
                    break
            stream_line = one(access, kind="stream", stream_id=stream)
            assert stream_line.bytes > 0  # type: ignore[attr-defined]
    session = as_json(one(access, kind="websocket"))
    assert (session["status"], session["path"], session["streams"]) == (101, "/ws", 2)
    assert isinstance(session["bytes"], int) and session["bytes"] >= received
    stream_entry = as_json(lines(access, kind="stream")[0])
    assert str(stream_entry["request_id"]).startswith(f"{session['request_id']}/")


def test_an_sse_stream(server: ServerHandle, access: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{server.port}/v1/stream"
    received = 0
    with (
        httpx.Client(trust_env=False, timeout=LIMIT) as client,
        connect_sse(client, "GET", url, params={"text": "Hi.", "voice": "S2"}) as events,
    ):
        for event in events.iter_sse():
            received += len(event.data)
            if event.event in ("end", "error"):
                assert event.event == "end", event.data
                break
    entry = as_json(one(access, path="/v1/stream"))
    assert (entry["kind"], entry["method"], entry["status"]) == ("sse", "GET", 200)
    assert isinstance(entry["bytes"], int) and entry["bytes"] > received


def test_the_log_formats() -> None:
    handler = logs.configure("warning", "json")
    assert isinstance(handler.formatter, logs.JsonFormatter)
    text = logs.configure("info", "text")
    assert not isinstance(text.formatter, logs.JsonFormatter)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", ("!",), None)
    try:
        raise ValueError("inner")
    except ValueError:
        import sys  # noqa: PLC0415

        record.exc_info = sys.exc_info()
    logs.RequestIdFilter().filter(record)
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["message"] == "boom !" and "ValueError: inner" in entry["exception"]
    assert "request_id" not in entry  # none known: not written
