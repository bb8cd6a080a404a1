"""Streamable HTTP on the wire: sessions and their table, resuming a dropped stream with
Last-Event-ID, ``close_streams`` handing a call's stream to the event store, and the SSE
retry field."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from mcp_service_support import (
    LONG_TEXT,
    SENTENCES,
    events,
    mcp_client,
    new_seen,
    read_call,
    speak,
)
from server_fixture import RunningServer, running_app, running_server
from support import (
    JSON_AND_SSE,
    POLL_LIMIT,
    fast_source,
    initialize,
    initialize_params,
    rpc,
    session,
    wait_until,
)

from diaproto.apps.serve.app import DiaService
from diaproto.mcp import McpHttpConfig


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


def initialize_with_all_busy(
    client: httpx.Client, url: str, session_ids: list[str]
) -> httpx.Response:
    """An ``initialize`` while every one of ``session_ids`` has a GET stream open (in use,
    so none can be evicted)."""
    with httpx.Client(timeout=POLL_LIMIT) as other, ExitStack() as streams:
        for session_id in session_ids:
            get = other.stream("GET", url, headers=session(session_id))
            assert streams.enter_context(get).status_code == 200
        return client.post(url, json=rpc("initialize", initialize_params()), headers=JSON_AND_SSE)


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
                client.post(url, json=rpc("initialize", initialize_params()), headers=JSON_AND_SSE)
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
        answer = initialize_with_all_busy(client, url, sessions())
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
        answer = initialize_with_all_busy(client, url, [second, third])
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


def test_a_stream_carries_one_retry_field(server: RunningServer) -> None:
    with mcp_client(server) as (client, url):
        session_id = initialize(client, url)
        with client.stream(
            "POST", url, json=speak(3, "Hi.", partial=False), headers=session(session_id)
        ) as r:
            raw = b"".join(r.iter_raw())
    assert raw.count(b"retry:") == 1, raw[:300]
