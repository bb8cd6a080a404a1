"""Helpers of the MCP service tests: a ``speak`` call, its event stream and what it carried
(JSON-RPC bodies, the handshake and the session headers are in tests/support.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent
from server_fixture import RunningServer
from support import POLL_LIMIT, rpc

SENTENCES = " ".join(f"Sentence {n} of the test speaks a little while." for n in range(6))

LONG_TEXT = " ".join(f"word{i}" for i in range(300))


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
