"""The MCP server of ``diaproto serve`` on the wire, with independent clients (httpx,
httpx-sse, websockets, raw sockets): the HTTP rules, sessions, resume, and one test for each
known failure of other MCP servers (the MCP transports design notes).

The official SDKs' own suites are in ``tests/interop/mcp``; these tests reach what the SDKs cannot
(raw statuses, dropped streams, frozen readers, partial results).
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.limits import ServiceLimits
from diaproto.apps.serve.sources import SyntheticSource
from httpx_sse import EventSource, ServerSentEvent
from server_fixture import RunningServer, fast_source, running_app, running_server
from support import POLL_LIMIT, wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from diaproto.config import ConnectionConfig
from diaproto.mcp import McpHttpConfig

JSON_AND_SSE = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
SENTENCES = " ".join(f"Sentence {n} of the test speaks a little while." for n in range(6))
LONG_TEXT = " ".join(f"word{i}" for i in range(300))


def rpc(method: str, params: dict[str, Any] | None = None, rid: int | None = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if rid is not None:
        body["id"] = rid
    if params is not None:
        body["params"] = params
    return body


def initialize(client: httpx.Client, url: str, capabilities: dict[str, Any] | None = None) -> str:
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities or {},
        "clientInfo": {"name": "diaproto-tests", "version": "0"},
    }
    answer = client.post(url, json=rpc("initialize", params), headers=JSON_AND_SSE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["protocolVersion"] == "2025-11-25"
    session_id = answer.headers["mcp-session-id"]
    done = client.post(
        url, json=rpc("notifications/initialized", rid=None), headers=session(session_id)
    )
    assert done.status_code == 202
    return session_id


def session(session_id: str) -> dict[str, str]:
    return {**JSON_AND_SSE, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}


def speak(rid: int, text: str, *, partial: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"progressToken": f"p{rid}"}
    if partial:
        meta["partialResultToken"] = f"t{rid}"
    return rpc("tools/call", {"name": "speak", "arguments": {"text": text}, "_meta": meta}, rid)


def events(response: httpx.Response) -> Iterator[ServerSentEvent]:
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"].startswith("text/event-stream")
    return EventSource(response).iter_sse()


@contextmanager
def mcp_client(server: RunningServer | Any) -> Iterator[tuple[httpx.Client, str]]:
    with httpx.Client(timeout=POLL_LIMIT) as client:
        yield client, f"{server.url}/mcp"


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


# --- sessions ------------------------------------------------------------------------------


def test_session_lifecycle(server: RunningServer) -> None:
    registered = server.call(lambda: len(server.service.mcp.sessions))
    with mcp_client(server) as (client, url):
        # A refused initialize leaves nothing behind (python-sdk #3228).
        bad = rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
        answer = client.post(url, json=bad, headers=JSON_AND_SSE)
        assert answer.status_code == 400 and "mcp-session-id" not in answer.headers
        assert server.call(lambda: len(server.service.mcp.sessions)) == registered
        assert client.post(url, json=rpc("tools/list"), headers=JSON_AND_SSE).status_code == 400
        unknown = client.post(url, json=rpc("tools/list"), headers=session("0" * 32))
        assert unknown.status_code == 404
        session_id = initialize(client, url)
        assert len(session_id) == 32 and all(c in "0123456789abcdef" for c in session_id)
        listed = client.post(url, json=rpc("tools/list", rid=2), headers=session(session_id))
        assert listed.headers["content-type"] == "application/json"
        assert [t["name"] for t in listed.json()["result"]["tools"]] == ["speak", "list_voices"]
        odd = {**session(session_id), "mcp-protocol-version": "1999-01-01"}
        assert client.post(url, json=rpc("tools/list", rid=3), headers=odd).status_code == 400
        # DELETE ends it, and nothing of it stays registered (python-sdk #3300).
        metrics = client.get(f"{server.url}/metrics").text
        assert f'diaproto_mcp_sessions{{transport="streamable"}} {registered + 1}.0' in metrics
        assert client.delete(url, headers=session(session_id)).status_code == 204
        assert server.call(lambda: len(server.service.mcp.sessions)) == registered
        gone = client.post(url, json=rpc("tools/list", rid=4), headers=session(session_id))
        assert gone.status_code == 404
        assert client.delete(url, headers=session(session_id)).status_code == 404


def test_idle_sessions_expire() -> None:
    """python-sdk #1283: sessions nobody uses are ended, not kept forever."""
    config = McpHttpConfig(session_idle_timeout=0.3)
    service = DiaService(fast_source(), mcp_config=config)
    with running_app(service) as app, mcp_client(app) as (client, url):
        session_id = initialize(client, url)
        assert app.call(lambda: len(service.mcp.sessions)) == 1
        wait_until(lambda: app.call(lambda: len(service.mcp.sessions)) == 0, "it expired")
        answer = client.post(url, json=rpc("tools/list"), headers=session(session_id))
        assert answer.status_code == 404
        # A call whose client dropped its stream and never resumed ends with the session.
        session_id = initialize(client, url)
        with client.stream("POST", url, json=speak(2, LONG_TEXT), headers=session(session_id)) as r:
            next(events(r))
            assert app.call(lambda: service.generations.running_workers) == 1
        wait_until(lambda: app.call(lambda: len(service.mcp.sessions)) == 0, "it expired")
        wait_until(
            lambda: app.call(lambda: service.generations.running_workers) == 0,
            "the held call was cancelled with its session",
        )


# --- resume --------------------------------------------------------------------------------


def read_call(stream: Iterator[ServerSentEvent], seen: dict[str, Any], stop_after: int) -> bool:
    """Read a call's events into ``seen`` until ``stop_after`` partials (or the end);
    True once its response arrived."""
    try:
        for event in stream:
            if _record(event, seen):
                return True
            if len(seen["partials"]) == stop_after:
                return False
    except httpx.RemoteProtocolError:
        pass  # the server dropped the stream (no last chunk): the client will resume
    return False


def _record(event: ServerSentEvent, seen: dict[str, Any]) -> bool:
    """Note one event; True if it was the response."""
    if event.id:
        seen["last_id"] = event.id
    if not event.data:
        return False  # the priming event
    message = json.loads(event.data)
    if "id" in message:
        seen["responses"].append(message)
        return True
    params = message["params"]
    if message["method"] == "notifications/progress":
        seen["progress"].append(params["progress"])
    else:
        seen["partials"].append(params)
    return False


def new_seen() -> dict[str, Any]:
    return {"last_id": None, "responses": [], "progress": [], "partials": []}


def test_resume_after_the_server_drops_the_stream(server: RunningServer) -> None:
    """The server drops a 2025-11-25 stream mid-call; the client resumes with Last-Event-ID
    and gets every remaining message exactly once: the partial results' seq run 0..n with no
    gap or repeat, progress only increases, and the audio streamed equals the WAV returned."""
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url, {"partialResults": {}})
        seen = new_seen()
        with client.stream("POST", url, json=speak(7, SENTENCES), headers=session(session_id)) as r:
            stream = events(r)
            assert not read_call(stream, seen, stop_after=5)
            closed = server.call(lambda: server.service.mcp.close_streams(time.monotonic()))
            assert closed == 1
            assert not read_call(stream, seen, stop_after=-1)  # the stream ends, no response
        resumes = 0
        while not seen["responses"]:
            resumes += 1
            assert resumes <= 3
            headers = {**session(session_id), "last-event-id": seen["last_id"]}
            with client.stream("GET", url, headers=headers) as r:
                read_call(events(r), seen, stop_after=-1)
    assert resumes == 1
    assert [p["seq"] for p in seen["partials"]] == list(range(len(seen["partials"])))
    assert {p["partialResultToken"] for p in seen["partials"]} == {"t7"}
    assert all(a < b for a, b in zip(seen["progress"], seen["progress"][1:], strict=False))
    (response,) = seen["responses"]
    assert response["id"] == 7
    wav = result_wav(response["result"])
    streamed = b"".join(base64.b64decode(c["data"]) for p in seen["partials"] for c in p["content"])
    assert wav[44:] == streamed and len(streamed) > 100_000


def test_a_message_sent_as_its_stream_is_closed_waits_for_the_resume(
    server: RunningServer,
) -> None:
    """close_streams hands a call's stream to the event store at once: what the call sends
    before ConnectionClosed comes round is kept for the resume, not lost on the closed
    connection (one loop callback: no thread timing involved)."""
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url, {"partialResults": {}})
        seen = new_seen()
        with client.stream("POST", url, json=speak(7, SENTENCES), headers=session(session_id)) as r:
            assert not read_call(events(r), seen, stop_after=1)

            def close_then_report() -> list[str]:
                now = time.monotonic()
                mcp = server.service.mcp
                mcp.close_streams(now)
                peer = mcp.sessions.get(session_id, now)
                assert peer is not None and peer.store is not None
                assert peer.session.progress(7, 1000.0)
                peer.pump(now)
                return [text for _, text in peer.store.replay_after(seen["last_id"])[1]]

            kept = server.call(close_then_report)
        client.delete(url, headers=session(session_id))  # the held call stops with it
    assert any(json.loads(text).get("params", {}).get("progress") == 1000.0 for text in kept)


def result_wav(result: dict[str, Any]) -> bytes:
    """A speak result's WAV, inline or behind its link."""
    block = result["content"][0]
    if block["type"] == "audio":
        return base64.b64decode(block["data"])
    assert block["type"] == "resource_link", block
    return httpx.get(block["uri"], timeout=POLL_LIMIT).content


def test_replay_never_crosses_streams(server: RunningServer) -> None:
    """fastmcp #4402: a resume replays only the stream its Last-Event-ID names."""
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url, {"partialResults": {}})
        seen = {rid: new_seen() for rid in (1, 2)}
        with (
            client.stream("POST", url, json=speak(1, SENTENCES), headers=session(session_id)) as a,
            client.stream("POST", url, json=speak(2, SENTENCES), headers=session(session_id)) as b,
        ):
            streams = {1: events(a), 2: events(b)}
            for rid in (1, 2):
                assert not read_call(streams[rid], seen[rid], stop_after=3)
            server.call(lambda: server.service.mcp.close_streams(time.monotonic()))
            for rid in (1, 2):
                read_call(streams[rid], seen[rid], stop_after=-1)
        for rid in (2, 1):
            headers = {**session(session_id), "last-event-id": seen[rid]["last_id"]}
            with client.stream("GET", url, headers=headers) as r:
                assert read_call(events(r), seen[rid], stop_after=-1)
    for rid in (1, 2):
        partials = seen[rid]["partials"]
        assert {p["partialResultToken"] for p in partials} == {f"t{rid}"}
        assert [p["seq"] for p in partials] == list(range(len(partials)))
        assert [m["id"] for m in seen[rid]["responses"]] == [rid]


def test_resume_from_an_unknown_event_id_is_refused(server: RunningServer) -> None:
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url)
        headers = {**session(session_id), "last-event-id": "r999.3"}
        answer = client.get(url, headers=headers)
        assert answer.status_code == 400 and "unknown event id" in answer.text


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
        ws.send(json.dumps(rpc("initialize", _init_params(), 1)))
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


def _init_params() -> dict[str, Any]:
    return {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "diaproto-tests", "version": "0"},
    }


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
            ("initialize", _init_params()),
            ("logging/setLevel", {}),
            ("logging/setLevel", {"level": "debug"}),
        ):
            body = rpc(method, {**params, "_meta": _modern_meta()})
            answer = client.post(url, json=body, headers=_modern_headers(method))
            assert answer.status_code == 404, (method, answer.text)
            assert answer.json()["error"]["code"] == -32601, answer.text
            assert answer.json()["error"]["data"] == method


def test_one_peer_cannot_fill_the_session_table(caplog: pytest.LogCaptureFixture) -> None:
    """A flood of initialize from one peer evicts that peer's own idle sessions (never-used
    first, then the least recently active) instead of refusing newcomers; a session in use
    (an open stream, or a call held for its client's resume) is never evicted; when nothing
    can be evicted the newcomer gets 429 with Retry-After, a log line and a count."""
    caplog.set_level(logging.INFO, logger="diaproto.mcp")
    config = McpHttpConfig(max_sessions=100, max_sessions_per_peer=3)
    service = DiaService(fast_source(), mcp_config=config)
    refused: list[str] = []
    service.mcp.on_session_refused = refused.append

    def sessions() -> list[str]:
        ids: list[str] = app.call(lambda: list(service.mcp.sessions))
        return ids

    with running_app(service) as app, mcp_client(app) as (client, url):
        kept = initialize(client, url)
        # In use: its GET stream is open (what both SDK clients do after initialize).
        with client.stream("GET", url, headers=session(kept)) as standing:
            assert standing.status_code == 200
            # A call whose stream dropped: held (no stream, no request) for the client's resume.
            held = initialize(client, url)
            with client.stream("POST", url, json=speak(2, LONG_TEXT), headers=session(held)) as r:
                next(events(r))

            def streamless() -> bool:
                peer = service.mcp.sessions.get(held, 0.0)
                return peer is not None and not peer.busy

            wait_until(lambda: app.call(streamless), "the held call has no stream")
            used = initialize(client, url)  # used more recently than held: LRU would spare it
            pinged = client.post(url, json=rpc("ping", rid=2), headers=session(used))
            assert pinged.status_code == 200
            flood = [
                client.post(url, json=rpc("initialize", _init_params()), headers=JSON_AND_SSE)
                for _ in range(20)
            ]
            assert {answer.status_code for answer in flood} == {200}
            # The first newcomer evicted the one idle session (used); the rest of the flood
            # evicted its own never-used sessions. The stream's and the held call's stay.
            assert sessions() == [kept, held, flood[-1].headers["mcp-session-id"]]
            listed = client.post(url, json=rpc("tools/list", rid=3), headers=session(kept))
            assert listed.status_code == 200
            assert f"MCP session {used} evicted" in caplog.text
        # Every session in use: nothing to evict, so the newcomer is refused, and told when.
        with httpx.Client(timeout=POLL_LIMIT) as other, ExitStack() as streams:
            for session_id in sessions():
                get = other.stream("GET", url, headers=session(session_id))
                assert streams.enter_context(get).status_code == 200
            answer = client.post(url, json=rpc("initialize", _init_params()), headers=JSON_AND_SSE)
        assert answer.status_code == 429, answer.text
        assert int(answer.headers["retry-after"]) > 0
        assert "all in use" in answer.json()["error"]["message"]
        assert refused == ["peer"]
        assert "MCP 429 from" in caplog.text
        assert len(sessions()) == 3


def test_a_full_session_table_refuses_only_when_all_are_in_use() -> None:
    config = McpHttpConfig(max_sessions=2, max_sessions_per_peer=10)
    service = DiaService(fast_source(), mcp_config=config)
    refused: list[str] = []
    service.mcp.on_session_refused = refused.append
    with running_app(service) as app, mcp_client(app) as (client, url):
        first, second = initialize(client, url), initialize(client, url)
        third = initialize(client, url)  # evicts first, the least recently active
        ids = app.call(lambda: list(service.mcp.sessions))
        assert first not in ids and {second, third} <= set(ids)
        with httpx.Client(timeout=POLL_LIMIT) as other, ExitStack() as streams:
            for session_id in (second, third):
                get = other.stream("GET", url, headers=session(session_id))
                assert streams.enter_context(get).status_code == 200
            answer = client.post(url, json=rpc("initialize", _init_params()), headers=JSON_AND_SSE)
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) > 0
        assert refused == ["full"]


def test_a_session_header_sent_twice_is_refused(server: RunningServer) -> None:
    with mcp_client(server) as (client, url):
        first, second = initialize(client, url), initialize(client, url)
        headers = [(k, v) for k, v in session(first).items()] + [("mcp-session-id", second)]
        for method, body in (("POST", json.dumps(rpc("tools/list")).encode()), ("GET", b"")):
            answer = client.request(method, url, headers=headers, content=body)
            assert answer.status_code == 400, (method, answer.text)
            assert "Mcp-Session-Id" in answer.json()["error"]["message"]
        answer = client.request("DELETE", url, headers=headers)
        assert answer.status_code == 400
        versions = [*session(first).items(), ("mcp-protocol-version", "2025-06-18")]
        answer = client.post(url, json=rpc("tools/list"), headers=versions)
        assert answer.status_code == 400
        assert "MCP-Protocol-Version" in answer.json()["error"]["message"]
        # Neither session was touched.
        for session_id in (first, second):
            listed = client.post(url, json=rpc("tools/list"), headers=session(session_id))
            assert listed.status_code == 200


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


def test_a_stream_carries_one_retry_field(server: RunningServer) -> None:
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url)
        with client.stream(
            "POST", url, json=speak(3, "Hi.", partial=False), headers=session(session_id)
        ) as r:
            raw = b"".join(r.iter_raw())
    assert raw.count(b"retry:") == 1, raw[:300]


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
