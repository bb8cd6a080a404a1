"""The conformance fixture's server-to-client paths over real HTTP, without node: a tool
that asks the client (elicitation, at 2025-11-25) gets its answer through a POSTed
response, and a tool that closes its own stream mid-call (SEP-1699) delivers its result
on the client's resume with Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conformance_fixture import conformance_service
from httpx_sse import EventSource

from diaproto.adapters import start_in_thread

TIMEOUT = 30.0
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    handle = start_in_thread("asyncio", conformance_service(), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{handle.port}/mcp"
    finally:
        stopped = handle.stop(15.0)
    assert stopped


def rpc(request_id: int, method: str, params: dict[str, Any] | None = None) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def open_session(client: httpx.Client, base: str, capabilities: dict[str, Any]) -> dict[str, str]:
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities,
        "clientInfo": {"name": "fixture-test", "version": "0"},
    }
    reply = client.post(base, content=rpc(0, "initialize", params), headers=HEADERS)
    assert reply.status_code == 200, reply.text
    session = {
        **HEADERS,
        "mcp-session-id": reply.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-11-25",
    }
    note = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert client.post(base, content=note, headers=session).status_code == 202
    return session


def messages(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event id, message) for each message event of an SSE response."""
    for event in EventSource(response).iter_sse():
        if event.data:
            yield event.id, json.loads(event.data)


def test_elicitation_round_trip(base: str) -> None:
    with httpx.Client(timeout=TIMEOUT) as client:
        session = open_session(client, base, {"elicitation": {}})
        call = rpc(1, "tools/call", {"name": "test_elicitation", "arguments": {"message": "Hi?"}})
        with client.stream("POST", base, content=call, headers=session) as response:
            stream = messages(response)
            _, asked = next(stream)
            assert asked["method"] == "elicitation/create"
            assert asked["params"]["message"] == "Hi?"
            answer = {"action": "accept", "content": {"response": "hello"}}
            reply = json.dumps({"jsonrpc": "2.0", "id": asked["id"], "result": answer})
            assert client.post(base, content=reply, headers=session).status_code == 202
            _, result = next(stream)
        assert result["id"] == 1
        [text] = result["result"]["content"]
        assert text["text"] == 'User response: action=accept, content={"response": "hello"}'


def test_a_client_without_the_capability_is_not_asked(base: str) -> None:
    with httpx.Client(timeout=TIMEOUT) as client:
        session = open_session(client, base, {})
        call = rpc(1, "tools/call", {"name": "test_sampling", "arguments": {"prompt": "x"}})
        with client.stream("POST", base, content=call, headers=session) as response:
            [(_, result)] = list(messages(response))
        assert result["result"]["isError"] is True


def test_a_stream_closed_mid_call_is_resumed(base: str) -> None:
    with httpx.Client(timeout=TIMEOUT) as client:
        session = open_session(client, base, {})
        call = rpc(1, "tools/call", {"name": "test_reconnection", "arguments": {}})
        last_id = None
        with client.stream("POST", base, content=call, headers=session) as response:
            for event in EventSource(response).iter_sse():
                last_id = event.id or last_id
                assert not event.data, "the stream ends before the result"
        assert last_id, "the priming event carries an id to resume from"
        resume = {**session, "accept": "text/event-stream", "last-event-id": last_id}
        with client.stream("GET", base, headers=resume) as response:
            assert response.status_code == 200
            results = [message for _, message in messages(response) if "id" in message]
        assert results[0]["id"] == 1
        assert "Reconnection test completed" in results[0]["result"]["content"][0]["text"]
