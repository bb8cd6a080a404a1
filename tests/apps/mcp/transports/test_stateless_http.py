"""2026-07-28 on the wire: an application tool's -32021 is HTTP 400, and ``Mcp-Param-<Name>``
headers are checked against the tool's ``x-mcp-header`` arguments (the service passes its
tools' input schemas to :func:`diaproto.mcp.stateless.check_request`)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import httpx
from server_fixture import running_app
from support import fast_source

from diaproto.apps.serve.app import DiaService
from diaproto.mcp import Tool, ToolCall
from diaproto.mcp.jsonrpc import HEADER_MISMATCH, MISSING_CLIENT_CAPABILITY

if TYPE_CHECKING:
    from diaproto.apps.mcp.peer import McpPeer

MODERN = "2026-07-28"
REGION_SCHEMA = {
    "type": "object",
    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
}


def needs_sampling(peer: McpPeer, call: ToolCall, now: float) -> None:
    data: dict[str, Any] = {"requiredCapabilities": {"sampling": {}}}
    peer.session.fail(call.request_id, MISSING_CLIENT_CAPABILITY, "sampling is required", data)
    peer.pump(now)


def echo_region(peer: McpPeer, call: ToolCall, now: float) -> None:
    peer.session.log("info", "deploying", related=call.request_id)  # opens the stream
    text = f"region {call.arguments.get('region')}"
    peer.session.respond(call.request_id, {"content": [{"type": "text", "text": text}]})
    peer.pump(now)


def post(
    client: httpx.Client, url: str, tool: str, arguments: dict[str, Any], **extra: str
) -> httpx.Response:
    params = {
        "name": tool,
        "arguments": arguments,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/logLevel": "info",  # so echo_region's log is sent
        },
    }
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": tool,
        **extra,
    }
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}
    return client.post(url, json=body, headers=headers)


def test_application_tools_at_2026_07_28() -> None:
    service = DiaService(fast_source())
    service.mcp.add_tool(
        Tool("needs_sampling", "Needs sampling.", {"type": "object"}), needs_sampling
    )
    service.mcp.add_tool(Tool("deploy", "Deploys to a region.", REGION_SCHEMA), echo_region)
    with running_app(service) as app, httpx.Client(timeout=10) as client:
        url = f"{app.url}/mcp"

        # A tool whose only answer is an error: JSON with the code's status (-32021: 400).
        refused = post(client, url, "needs_sampling", {})
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/json"
        error = refused.json()
        assert error["id"] == 9 and error["error"]["code"] == MISSING_CLIENT_CAPABILITY

        # A tool that says more than its answer still streams it (200, SSE).
        served = post(client, url, "deploy", {"region": "eu"}, **{"Mcp-Param-Region": "eu"})
        assert served.status_code == 200, served.text
        assert served.headers["content-type"].startswith("text/event-stream")
        assert "region eu" in served.text
        encoded = f"=?base64?{base64.b64encode(b'eu').decode()}?="
        served = post(client, url, "deploy", {"region": "eu"}, **{"Mcp-Param-Region": encoded})
        assert served.status_code == 200 and "region eu" in served.text

        # Mcp-Param-Region wrong, badly encoded, or missing while the body has the region.
        for extra in (
            {"Mcp-Param-Region": "us"},
            {"Mcp-Param-Region": "=?base64?SGVsbG8?="},
            {"Mcp-Param-Region": "=?base64?SGVs!!!bG8=?="},
            {},
        ):
            answer = post(client, url, "deploy", {"region": "eu"}, **extra)
            assert answer.status_code == 400, (extra, answer.text)
            assert answer.json()["error"]["code"] == HEADER_MISMATCH
            assert answer.json()["id"] == 9

        # No region in the body: no header expected.
        served = post(client, url, "deploy", {})
        assert served.status_code == 200 and "region None" in served.text
