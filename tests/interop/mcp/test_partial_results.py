"""Streamed audio through SEP-2998 (draft) ``notifications/tools/partial_result``, on the raw wire.

Neither official SDK speaks SEP-2998 (see docs/notes/mcp-sdk-wire.md), so these requests are
written by hand with httpx. The SEP declares the capability as a top-level ``partialResults``
in the client capabilities and opts a call in with ``_meta.partialResultToken``; the 2025-11-25
handshake also sends it under ``experimental`` (the only place the SDK's models keep it).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource
from mcp_targets import TARGETS, McpTarget, mcp_server

PARTIAL_RESULT = "notifications/tools/partial_result"
MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
CLIENT_INFO = {"name": "diaproto-tests-raw", "version": "0"}
TIMEOUT = httpx.Timeout(20.0)


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest) -> Iterator[McpTarget]:
    with mcp_server(request.param) as running:
        yield running


def exchange(
    http: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]
) -> list[dict[str, Any]]:
    """POST one JSON-RPC request; every message of its response (a JSON body or an SSE stream)."""
    with http.stream("POST", url, json=body, headers={**ACCEPT, **headers}) as response:
        assert response.status_code == 200, response.read()
        if response.headers["content-type"].startswith("application/json"):
            return [json.loads(response.read())]
        assert response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(event.data) for event in EventSource(response).iter_sse() if event.data]


def speak_call(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": "speak-1",
        "method": "tools/call",
        "params": {"name": "speak", "arguments": {"text": "one two three four"}, "_meta": meta},
    }


def modern_call(target: McpTarget, capabilities: dict[str, Any]) -> list[dict[str, Any]]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "progressToken": "progress-1",
        "partialResultToken": "prt-1",
    }
    headers = {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "speak"}
    with httpx.Client(timeout=TIMEOUT) as http:
        return exchange(http, target.mcp_url, speak_call(meta), headers)


def handshake_call(target: McpTarget, capabilities: dict[str, Any]) -> list[dict[str, Any]]:
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE,
            "capabilities": capabilities,
            "clientInfo": CLIENT_INFO,
        },
    }
    with httpx.Client(timeout=TIMEOUT) as http:
        response = http.post(target.mcp_url, json=initialize, headers=ACCEPT)
        assert response.status_code == 200, response.text
        session = {"mcp-session-id": response.headers["mcp-session-id"]}
        headers = {**ACCEPT, **session, "mcp-protocol-version": HANDSHAKE}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert http.post(target.mcp_url, json=initialized, headers=headers).status_code == 202
        meta = {"progressToken": "progress-1", "partialResultToken": "prt-1"}
        messages = exchange(http, target.mcp_url, speak_call(meta), headers)
        http.delete(target.mcp_url, headers=headers)
        return messages


def check(messages: list[dict[str, Any]], *, streamed: bool) -> None:
    *notifications, response = messages
    assert response["id"] == "speak-1" and "result" in response, response
    result = response["result"]
    assert not result.get("isError"), result
    # The final result is complete on its own, whether or not chunks were streamed.
    assert [block["type"] for block in result["content"]] == ["audio", "text"]
    assert base64.b64decode(result["content"][0]["data"])[:4] == b"RIFF"
    progress = [n["params"] for n in notifications if n["method"] == "notifications/progress"]
    assert progress and all(p["progressToken"] == "progress-1" for p in progress)
    values = [p["progress"] for p in progress]
    assert all(a < b for a, b in itertools.pairwise(values)), values
    partials = [n["params"] for n in notifications if n["method"] == PARTIAL_RESULT]
    if not streamed:
        assert partials == [], "partial results sent to a client that did not declare them"
        return
    assert partials, "no notifications/tools/partial_result although partialResults was declared"
    assert all(p["partialResultToken"] == "prt-1" for p in partials)
    assert [p["seq"] for p in partials] == list(range(len(partials)))
    for p in partials:
        assert p["content"] and all(block["type"] == "audio" for block in p["content"]), p
        assert all(base64.b64decode(block["data"], validate=True) for block in p["content"])


def test_modern_streams_partial_results_when_declared(target: McpTarget) -> None:
    check(modern_call(target, {"partialResults": {}}), streamed=True)


def test_modern_sends_no_partial_results_undeclared(target: McpTarget) -> None:
    check(modern_call(target, {}), streamed=False)


def test_handshake_streams_partial_results_when_declared(target: McpTarget) -> None:
    capabilities: dict[str, Any] = {"partialResults": {}, "experimental": {"partialResults": {}}}
    check(handshake_call(target, capabilities), streamed=True)


def test_handshake_sends_no_partial_results_undeclared(target: McpTarget) -> None:
    check(handshake_call(target, {}), streamed=False)
