"""Helpers of the MCP session tests: a session with two tools, messages sent through the
parser as a transport would, and what the session sends and hands out, read back."""

from __future__ import annotations

import json
from typing import Any

from diaproto.mcp.events import McpEvent, ToolCall
from diaproto.mcp.features import Tool
from diaproto.mcp.jsonrpc import RequestId, parse_message
from diaproto.mcp.negotiation import ServerInfo
from diaproto.mcp.outbox import Outbound
from diaproto.mcp.session import McpSession, SessionState

INFO = ServerInfo("diaproto-test", "1.2")

SPEAK = Tool("speak", "Speak text", {"type": "object", "required": ["text"]})

VOICES = Tool(
    "list_voices",
    "The voices",
    {"type": "object"},
    title="Voices",
    annotations={"readOnlyHint": True},
)

MODERN = "2026-07-28"


def new_session(info: ServerInfo = INFO) -> McpSession:
    return McpSession(info, (SPEAK, VOICES))


def send(session: McpSession, **body: Any) -> None:
    """One message from the client, through the parser as a transport would."""
    session.receive(parse_message(json.dumps({"jsonrpc": "2.0", **body})))


def outbound(session: McpSession) -> list[Outbound]:
    out: list[Outbound] = []
    while (message := session.next_outbound()) is not None:
        out.append(message)
    return out


def bodies(session: McpSession) -> list[dict[str, Any]]:
    return [json.loads(message.text) for message in outbound(session)]


def events(session: McpSession) -> list[McpEvent]:
    out: list[McpEvent] = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def only(session: McpSession) -> dict[str, Any]:
    """The one message the session sent."""
    [body] = bodies(session)
    return body


def error_code(session: McpSession, request_id: RequestId) -> int:
    body = only(session)
    assert body["id"] == request_id
    assert "result" not in body
    code: int = body["error"]["code"]
    return code


def initialize(
    session: McpSession, version: object = "2025-11-25", capabilities: object = None
) -> dict[str, Any]:
    params = {
        "protocolVersion": version,
        "capabilities": {} if capabilities is None else capabilities,
        "clientInfo": {"name": "test", "version": "0"},
    }
    send(session, id=0, method="initialize", params=params)
    return only(session)


def ready(capabilities: dict[str, Any] | None = None) -> McpSession:
    session = new_session()
    initialize(session, capabilities=capabilities)
    send(session, method="notifications/initialized")
    assert session.state is SessionState.READY
    return session


def call(
    session: McpSession,
    request_id: RequestId,
    *,
    progress: str | int | None = None,
    partial: str | int | None = None,
) -> ToolCall:
    meta: dict[str, Any] = {}
    if progress is not None:
        meta["progressToken"] = progress
    if partial is not None:
        meta["partialResultToken"] = partial
    params: dict[str, Any] = {"name": "speak", "arguments": {"text": "hi"}, "_meta": meta}
    send(session, id=request_id, method="tools/call", params=params)
    [event] = events(session)
    assert isinstance(event, ToolCall)
    assert outbound(session) == []
    return event


def modern(capabilities: dict[str, Any] | None = None, info: ServerInfo = INFO) -> McpSession:
    return McpSession.ready(info, (SPEAK,), MODERN, capabilities or {})
