"""The MCP server of ``diaproto serve`` on the wire, with independent clients (httpx,
httpx-sse, websockets, raw sockets): the HTTP rules, WebSocket and 2026-07-28, and one test
for each known failure of other MCP servers (the MCP transports design notes). Streamable
HTTP's sessions and resume are in ``test_streamable_http.py``.

The official SDKs' own suites are in ``tests/interop/mcp``; these tests reach what the SDKs cannot
(raw statuses, dropped streams, frozen readers, partial results).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from mcp_service_support import (
    LONG_TEXT,
    SENTENCES,
    _record,
    events,
    mcp_client,
    new_seen,
    read_call,
    speak,
)
from server_fixture import RunningServer, running_app, running_server
from support import (
    JSON_AND_SSE,
    fast_source,
    initialize,
    initialize_params,
    rpc,
    session,
    wait_until,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.limits import ServiceLimits
from diaproto.apps.serve.sources import SyntheticSource
from diaproto.config import ConnectionConfig
from diaproto.mcp import McpHttpConfig


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


# --- the HTTP rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("POST", "/mcp", {**JSON_AND_SSE, "host": "evil.example"}, b"{}", 421),
        ("POST", "/mcp", {**JSON_AND_SSE, "origin": "http://evil.example"}, b"{}", 403),
        ("POST", "/mcp", {**JSON_AND_SSE, "origin": "null"}, b"{}", 403),
        ("POST", "/mcp", {**JSON_AND_SSE, "content-type": "text/plain"}, b"{}", 415),
        ("POST", "/mcp", {**JSON_AND_SSE, "accept": "application/json"}, b"{}", 406),
        ("POST", "/mcp", JSON_AND_SSE, b"x" * (1024 * 1024 + 1), 413),
        ("POST", "/mcp", JSON_AND_SSE, b"{not json", 400),
        ("POST", "/mcp", JSON_AND_SSE, json.dumps(rpc("tools/list")).encode(), 400),
        ("PUT", "/mcp", JSON_AND_SSE, b"{}", 405),
        ("GET", "/mcp", {"accept": "application/json"}, b"", 406),
        ("GET", "/mcp/", {"accept": "text/event-stream"}, b"", 404),
        ("POST", "/mcp/", JSON_AND_SSE, b"{}", 404),
        ("POST", "/messages?session_id=nope", JSON_AND_SSE, b"{}", 404),
    ],
)
def test_http_rules(  # noqa: PLR0917 (one row of the table)
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    answer = httpx.request(method, server.url + path, headers=headers, content=body, timeout=5)
    assert answer.status_code == status, answer.text
    assert "location" not in answer.headers  # never a redirect (python-sdk #732)
    if status != 413:  # the core refuses an oversized body before the application sees it
        assert answer.json()["error"]["message"]
    if status == 405:
        assert answer.headers["allow"] == "GET, POST, DELETE"


def test_allowed_origin_passes(server: RunningServer) -> None:
    with mcp_client(server) as (client, url):
        client.headers["origin"] = "http://localhost:5173"
        initialize(client, url)


def test_bearer_token() -> None:
    service = DiaService(fast_source(), mcp_config=McpHttpConfig(bearer_token="s3cret"))
    with running_app(service) as app, mcp_client(app) as (client, url):
        refused = client.post(url, json=rpc("ping"), headers=JSON_AND_SSE)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer ")
        wrong = client.post(url, json=rpc("ping"), headers={**JSON_AND_SSE, "authorization": "x"})
        assert wrong.status_code == 401
        client.headers["authorization"] = "Bearer s3cret"
        initialize(client, url)


# --- clients that misbehave ----------------------------------------------------------------


def test_generation_stops_when_the_client_leaves(server: RunningServer) -> None:
    """vllm #54947: once no one can receive the audio, the model stops."""

    def running() -> int:
        return int(server.call(lambda: server.service.generations.running_workers))

    wait_until(lambda: running() == 0, "earlier tests' generations ended")
    # WebSocket: the connection closes mid-call.
    with connect(
        f"ws://127.0.0.1:{server.port}/mcp", subprotocols=[Subprotocol("mcp")], proxy=None
    ) as ws:
        ws.send(json.dumps(rpc("initialize", initialize_params(), 1)))
        json.loads(ws.recv(timeout=5))
        ws.send(json.dumps(speak(2, LONG_TEXT)))
        ws.recv(timeout=5)  # the first progress report
        assert running() == 1
    wait_until(lambda: running() == 0, "the WebSocket's generation stopped")
    # 2026-07-28: closing the request's stream is the cancellation.
    with httpx.Client(timeout=5) as client:
        body = speak(3, LONG_TEXT)
        body["params"]["_meta"].update(_modern_meta())
        headers = {**JSON_AND_SSE, **_modern_headers("tools/call", "speak")}
        with client.stream("POST", f"{server.url}/mcp", json=body, headers=headers) as r:
            # Held in a name: a finalised event iterator (whenever the garbage collector gets
            # to it) closes httpcore's stream, and with it the connection, which cancels.
            stream = events(r)
            first = json.loads(next(e for e in stream if e.data).data)
            assert first["method"] == "notifications/progress", first
            wait_until(lambda: running() == 1, "the 2026-07-28 request's generation runs")
    wait_until(lambda: running() == 0, "the 2026-07-28 request's generation stopped")


def test_frozen_reader_is_paced_and_others_are_served() -> None:
    """sse-starlette #208 and mcp-context-forge #1682: a client that stops reading neither
    blocks the server nor makes it queue without bound; its generation is paused."""
    source = SyntheticSource(real_time_factor=0.0, first_chunk_latency=0.0)
    service = DiaService(source)
    with running_app(service) as app, mcp_client(app) as (client, url):
        frozen = socket.socket()
        frozen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        frozen.connect(("127.0.0.1", app.port))
        try:
            session_id = initialize(client, url, {"partialResults": {}})
            request = json.dumps(speak(1, LONG_TEXT))
            frozen.sendall(
                (
                    f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                    f"accept: application/json, text/event-stream\r\nmcp-session-id: {session_id}"
                    f"\r\nmcp-protocol-version: 2025-11-25\r\ncontent-length: {len(request)}"
                    f"\r\n\r\n{request}"
                ).encode()
            )

            def chunks() -> int:
                return sum(g.chunks for g in service.generations.live.values())

            wait_until(lambda: app.call(chunks) > 0, "the frozen client's call started")
            before = -1
            for _ in range(100):  # paused: no new chunks over half a second
                time.sleep(0.5)
                now = app.call(chunks)
                if now == before:
                    break
                before = now
            assert now == before, "the generation was never paused"
            assert app.call(lambda: any(not g.finished for g in service.generations.live.values()))
            held = app.call(service.mcp.buffered_bytes)
            assert 0 < held <= ConnectionConfig().scheduler.max_buffered
            # Meanwhile another session is served at once.
            other = initialize(client, url)
            listed = client.post(url, json=rpc("tools/list", rid=9), headers=session(other))
            assert listed.status_code == 200
        finally:
            frozen.close()
        # A dropped 2025-11-25 stream is not a cancellation: the call waits, held, for a
        # resume. Ending the session (as the SDK clients do on close) stops it.
        assert client.delete(url, headers=session(session_id)).status_code == 204
        wait_until(
            lambda: app.call(lambda: service.generations.running_workers) == 0,
            "the frozen client's generation stopped with its session",
        )


def test_client_disconnects_never_crash_the_server(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """python-sdk #2064: a client vanishing at any point is routine."""
    caplog.set_level(logging.WARNING)
    partial_post = b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 50\r\n\r\n{"
    for payload in (
        partial_post,
        b"GET /sse HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            raw.sendall(payload)
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url)
        with client.stream("POST", url, json=speak(5, LONG_TEXT), headers=session(session_id)) as r:
            next(events(r))
        session_id = initialize(client, url)
        listed = client.post(url, json=rpc("tools/list"), headers=session(session_id))
        assert listed.status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# --- WebSocket and 2026-07-28 on the wire -------------------------------------------------


def test_websocket_text_only(server: RunningServer) -> None:
    url = f"ws://127.0.0.1:{server.port}/mcp"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, proxy=None)
    assert refused.value.response.status_code == 400
    with connect(url, subprotocols=[Subprotocol("mcp")], proxy=None) as ws:
        ws.send("{oops")
        error = json.loads(ws.recv(timeout=5))
        assert error["error"]["code"] == -32700 and error["id"] is None
        ws.send(json.dumps(rpc("tools/list")))
        assert json.loads(ws.recv(timeout=5))["error"]["code"] == -32600  # not initialized
        ws.send(b"\x00binary")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_modern_rules(server: RunningServer) -> None:
    url = f"{server.url}/mcp"
    headers = {**JSON_AND_SSE, **_modern_headers("tools/list")}
    body = rpc("tools/list", {"_meta": _modern_meta()})
    with httpx.Client(timeout=5) as client:
        listed = client.post(url, json=body, headers=headers)
        assert listed.status_code == 200 and "mcp-session-id" not in listed.headers
        result = listed.json()["result"]
        assert result["resultType"] == "complete" and "ttlMs" in result
        assert client.get(url, headers=headers).status_code == 405
        mismatch = client.post(url, json=body, headers={**headers, "mcp-method": "tools/call"})
        assert (mismatch.status_code, mismatch.json()["error"]["code"]) == (400, -32020)
        future = {**headers, "mcp-protocol-version": "2099-01-01"}
        later = rpc("tools/list", {"_meta": {**_modern_meta(), **_version("2099-01-01")}})
        unsupported = client.post(url, json=later, headers=future)
        assert (unsupported.status_code, unsupported.json()["error"]["code"]) == (400, -32022)
        assert "2026-07-28" in unsupported.json()["error"]["data"]["supported"]
        unknown = rpc("bogus/method", {"_meta": _modern_meta()})
        missing = client.post(url, json=unknown, headers=_modern_headers("bogus/method"))
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, -32601)
        note = client.post(url, json=rpc("notifications/x", rid=None), headers=headers)
        assert note.status_code == 202


def test_long_speech_is_linked_not_inlined(server: RunningServer) -> None:
    """The link is absolute, from the request's Host (issue 12): a client cannot be expected
    to know what a relative URI in a tool result is relative to."""
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url)
        with client.stream(
            "POST", url, json=speak(4, LONG_TEXT, partial=False), headers=session(session_id)
        ) as r:
            seen = new_seen()
            assert read_call(events(r), seen, stop_after=-1)
        (link, summary) = seen["responses"][0]["result"]["content"]
        assert link["type"] == "resource_link" and summary["type"] == "text"
        assert link["uri"].startswith(f"http://127.0.0.1:{server.port}/mcp/audio/")
        clip = client.get(link["uri"])
        assert clip.headers["content-type"] == "audio/wav"
        assert clip.content[:4] == b"RIFF" and len(clip.content) == link["size"]


def _version(version: str) -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": version}


def _modern_meta() -> dict[str, Any]:
    return {**_version("2026-07-28"), "io.modelcontextprotocol/clientCapabilities": {}}


def _modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {**JSON_AND_SSE, "mcp-protocol-version": "2026-07-28", "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


def test_an_application_adds_its_own_tool() -> None:
    """``McpService.add_tool``: an embedding application's tool on the same session
    machinery (its call answered over a 2025-11-25 SSE stream). Its progress reports, all
    made before the answer, are coalesced and then withdrawn by the answer: none is sent."""
    from diaproto.apps.mcp.peer import McpPeer  # noqa: PLC0415
    from diaproto.mcp import Tool, ToolCall  # noqa: PLC0415

    def count_to(peer: McpPeer, call: ToolCall, now: float) -> None:
        n = int(call.arguments["n"])
        for value in range(1, n + 1):
            peer.session.progress(call.request_id, value, n)
        peer.session.respond(call.request_id, {"content": [{"type": "text", "text": str(n)}]})
        peer.pump(now)

    service = DiaService(fast_source())
    service.mcp.add_tool(Tool("count", "Counts to n.", {"type": "object"}), count_to)
    with pytest.raises(ValueError, match="already offered"):
        service.mcp.add_tool(Tool("speak", "again", {"type": "object"}), count_to)
    with running_app(service) as app, mcp_client(app) as (client, url):
        session_id = initialize(client, url)
        listed = client.post(url, json=rpc("tools/list", rid=2), headers=session(session_id))
        assert [t["name"] for t in listed.json()["result"]["tools"]][-1] == "count"
        params = {"name": "count", "arguments": {"n": 5}, "_meta": {"progressToken": "c"}}
        call = rpc("tools/call", params, 3)
        with client.stream("POST", url, json=call, headers=session(session_id)) as r:
            seen = new_seen()
            assert read_call(events(r), seen, stop_after=-1)
        assert seen["responses"][0]["result"]["content"][0]["text"] == "5"
        assert seen["progress"] == []


# --- issue 12: outside testers' findings ---------------------------------------------------


def test_a_reused_request_id_is_refused_and_the_first_call_continues(
    server: RunningServer,
) -> None:
    """A request reusing the id of a call in flight gets a JSON-RPC error on its own POST;
    the call keeps its stream, its progress and its result (as on the WebSocket)."""
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url)
        with client.stream("POST", url, json=speak(7, SENTENCES), headers=session(session_id)) as r:
            stream = events(r)
            seen = new_seen()
            while not seen["progress"]:
                assert not _record(next(stream), seen)
            duplicate = client.post(url, json=rpc("ping", rid=7), headers=session(session_id))
            assert duplicate.status_code == 400, duplicate.text
            assert duplicate.headers["content-type"] == "application/json"
            error = duplicate.json()
            assert error["id"] == 7 and error["error"]["code"] == -32600
            assert "in use" in error["error"]["message"]
            assert read_call(stream, seen, stop_after=-1)
        assert [m["id"] for m in seen["responses"]] == [7]
        assert "result" in seen["responses"][0]
        # The id is free again once its call is answered.
        again = client.post(url, json=rpc("ping", rid=7), headers=session(session_id))
        assert again.status_code == 200 and again.json() == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {},
        }


def test_every_event_stays_well_under_the_sdk_event_limit(server: RunningServer) -> None:
    """The official Python SDK refuses an SSE event over 1 MiB: a result of 9-24 s of audio
    is linked, not inlined, and no event comes near the limit."""
    text = " ".join(f"word{i}" for i in range(40))  # about 12 s of audio: 1 MB of WAV
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url)
        with client.stream(
            "POST", url, json=speak(4, text, partial=False), headers=session(session_id)
        ) as r:
            seen = new_seen()
            stream = events(r)
            largest = 0
            for event in stream:
                largest = max(largest, len(event.data.encode()))
                if _record(event, seen):
                    break
        assert largest <= 512 * 1024
        (link, _summary) = seen["responses"][0]["result"]["content"]
        assert link["type"] == "resource_link" and link["size"] > 1_000_000


def test_removed_methods_are_not_found_at_2026_07_28(server: RunningServer) -> None:
    """ping, initialize and logging/setLevel do not exist at 2026-07-28: 404 with -32601."""
    url = f"{server.url}/mcp"
    with httpx.Client(timeout=5) as client:
        for method, params in (
            ("ping", {}),
            ("initialize", initialize_params()),
            ("logging/setLevel", {}),
            ("logging/setLevel", {"level": "debug"}),
        ):
            body = rpc(method, {**params, "_meta": _modern_meta()})
            answer = client.post(url, json=body, headers=_modern_headers(method))
            assert answer.status_code == 404, (method, answer.text)
            assert answer.json()["error"]["code"] == -32601, answer.text
            assert answer.json()["error"]["data"] == method


def test_an_unknown_version_is_told_what_is_served(server: RunningServer) -> None:
    """An unknown MCP-Protocol-Version takes the 2026-07-28 path (as the SDK's server does):
    a handshake-era body (no _meta) is -32602, and the message says why."""
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url)
        odd = {**session(session_id), "mcp-protocol-version": "1999-01-01"}
        answer = client.post(url, json=rpc("tools/list", rid=3), headers=odd)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == -32602
        assert "1999-01-01" in error["message"] and "2025-11-25" in error["message"]


def test_speak_calls_count_against_the_peer_generation_limit() -> None:
    """MCP ``speak`` starts generations like /ws and /v1/* do: past the peer's limit a call
    gets a tool error (isError) and nothing runs; the calls in progress are untouched."""
    service = DiaService(fast_source(), limits=ServiceLimits(max_generations_per_peer=2))
    with running_app(service) as app, mcp_client(app) as (client, url):
        session_id = initialize(client, url)
        with ExitStack() as calls:
            streams = []
            for rid in (1, 2):
                response = calls.enter_context(
                    client.stream(
                        "POST", url, json=speak(rid, LONG_TEXT), headers=session(session_id)
                    )
                )
                streams.append(events(response))
                seen = new_seen()
                while not seen["progress"]:
                    assert not _record(next(streams[-1]), seen)
            assert app.call(lambda: service.generations.owned_by("127.0.0.1")) == 2
            refused = client.post(url, json=speak(3, "Hello."), headers=session(session_id))
            (message,) = [json.loads(e.data) for e in events(refused) if e.data]
            assert message["id"] == 3 and message["result"]["isError"] is True
            assert "the limit" in message["result"]["content"][0]["text"]
            assert app.call(lambda: service.generations.owned_by("127.0.0.1")) == 2
