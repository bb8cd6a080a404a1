"""Targets for the MCP core: the JSON-RPC parser, a session fed a peer's messages, and the
HTTP checks with the 2026-07-28 ladder on a peer's headers.

A refused payload is answered, not raised: the parser's :class:`JsonRpcError` is caught here,
and any other exception (or a broken invariant, as an ``AssertionError``) is a finding.
"""

from __future__ import annotations

import json

from diaproto.mcp import CallCancelled, McpSession, ServerInfo, Tool, ToolCall
from diaproto.mcp.http import McpHttpConfig, check_access, check_post, check_stream
from diaproto.mcp.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    JsonRpcError,
    JsonRpcRequest,
    Message,
    RequestId,
    encode_message,
    parse_message,
)
from diaproto.mcp.protocol import Kind
from diaproto.mcp.stateless import check_request, is_modern
from fuzz.harness import target

PARSE_CODES = (PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS)


def _parse(payload: bytes) -> Message | JsonRpcError:
    try:
        return parse_message(payload)
    except JsonRpcError as error:
        assert error.code in PARSE_CODES, error.code
        encode_message(error.as_response()).encode("utf-8")
        return error


_PARSE_SEEDS = [
    b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}',
    b'{"jsonrpc":"2.0","id":"a","result":{"content":[]}}',
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x","data":[1.5,true]}}',
    b'{"jsonrpc":"2.0","id":"\\ud83d\\ude00","method":"m","params":{"k":"\\u00e9"}}',
]


@target("mcp_jsonrpc", seeds=_PARSE_SEEDS)
def mcp_jsonrpc(data: bytes) -> None:
    """Any payload parses or is refused with a JSON-RPC code; what parses round-trips."""
    message = _parse(data)
    if not isinstance(message, JsonRpcError):
        text = encode_message(message)
        text.encode("utf-8")  # whatever we accepted can be quoted back to the peer
        assert parse_message(text) == message


_INFO = ServerInfo("fuzz", "0")
_TOOLS = (Tool("speak", "", {"type": "object"}),)
_SESSION_SEEDS = [
    b"\x00"
    + b"\n".join(
        [
            b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":'
            b'"2025-11-25","capabilities":{"partialResults":{}},"clientInfo":{}}}',
            b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"speak",'
            b'"_meta":{"progressToken":1,"partialResultToken":"p"}}}',
            b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"speak"}}',
            b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2}}',
            b'{"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"debug"}}',
            b'{"jsonrpc":"2.0","id":4,"method":"tools/list"}',
        ]
    ),
    b"\x01"
    + b'{"jsonrpc":"2.0","id":1,"method":"server/discover"}\n'
    + b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"speak"}}',
]


@target("mcp_session", seeds=_SESSION_SEEDS)
def mcp_session(data: bytes) -> None:
    """A session fed one message per line; the application answers each call with progress,
    a partial result and a response, or leaves it for a later line (or a cancel) to end.

    Invariants: every message out is valid JSON-RPC as UTF-8; progress strictly increases
    per token; nothing about a call follows its final; close() leaves nothing in flight.
    """
    if not data:
        return
    flags, lines = data[0], data[1:].split(b"\n")
    if flags & 1:
        capabilities: dict[str, object] = {"partialResults": {}} if flags & 2 else {}
        session = McpSession.ready(_INFO, _TOOLS, "2026-07-28", capabilities)
    else:
        session = McpSession(_INFO, _TOOLS)
    calls: list[ToolCall] = []
    ended: set[RequestId] = set()
    last_progress: dict[RequestId, float] = {}
    for n, line in enumerate(lines[:50]):
        message = _parse(line)
        if isinstance(message, JsonRpcError):
            ended.discard(message.request_id)  # the refusal answers a new (bad) request
            session.refuse(message.as_response())
        else:
            if isinstance(message, JsonRpcRequest):
                ended.discard(message.id)  # the client reused an id: a new request
            session.receive(message)
        # Check what the session answered by itself now, while in_flight is as it was then.
        _check_outbound(session, ended, last_progress)
        while (event := session.next_event()) is not None:
            if isinstance(event, ToolCall):
                calls.append(event)
                ended.discard(event.request_id)  # a reused id is a new call
                last_progress.pop(event.request_id, None)
            else:
                assert isinstance(event, CallCancelled)
                ended.add(event.request_id)  # a cancelled call gets nothing more
                calls = [call for call in calls if call.request_id != event.request_id]
        for call in list(calls):
            session.progress(call.request_id, float(n))
            session.partial_result(call.request_id, [{"type": "text", "text": str(n)}])
            if (n + len(line)) % 3 == 0:
                assert session.respond(call.request_id, {"content": []})
                calls.remove(call)
        session.log("warning", n)
        _check_outbound(session, ended, last_progress)
    session.close()
    assert session.in_flight == ()
    assert session.next_outbound() is None


def _check_outbound(
    session: McpSession, ended: set[RequestId], last_progress: dict[RequestId, float]
) -> None:
    while (out := session.next_outbound()) is not None:
        assert parse_message(out.text.encode("utf-8")) is not None
        related = out.related
        if related is None:
            assert out.kind in (Kind.LOG, Kind.RESPONSE)
            continue
        assert related not in ended, f"{out.kind} after the final of {related!r}"
        if out.final:
            # A final for a call still in flight refuses a request that reused its id.
            if related not in session.in_flight:
                ended.add(related)
        elif out.kind is Kind.PROGRESS:
            value = json.loads(out.text)["params"]["progress"]
            assert value > last_progress.get(related, -1.0)
            last_progress[related] = value


_HTTP_CONFIG = McpHttpConfig(
    allowed_origins=("https://app.example",), bearer_token="s3cret", max_body_bytes=512
)
_REFUSALS = {401, 403, 406, 413, 415, 421}
_LADDER_CODES = (INVALID_PARAMS, HEADER_MISMATCH, UNSUPPORTED_PROTOCOL_VERSION)
_HTTP_SEEDS = [
    b"host: 127.0.0.1:8000\norigin: http://localhost:3000\nauthorization: Bearer s3cret\n"
    b"content-type: application/json; charset=utf-8\naccept: application/json, text/event-stream\n"
    b"mcp-protocol-version: 2026-07-28\nmcp-method: tools/call\nmcp-name: =?base64?c3BlYWs=?=\n"
    b'\n{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"speak","_meta":'
    b'{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
    b'"io.modelcontextprotocol/clientCapabilities":{}}}}',
    b"Host: [::1]\nOrigin: null\nAccept: */*\n\n{}",
    b"host: [::1\norigin: http://[::1\nmcp-protocol-version: 2027-01-01\n\n",
]


@target("mcp_http", seeds=_HTTP_SEEDS)
def mcp_http(data: bytes) -> None:
    """Header lines (``name: value``), a blank line, then a body: every check answers with a
    refusal or None, and the 2026-07-28 ladder with one of its codes or None."""
    head, _, body = data.partition(b"\n\n")
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (
            line.partition(":") for line in head.decode("latin-1").split("\n") if line
        )
    )
    for refusal in (
        check_access(headers, _HTTP_CONFIG),
        check_post(headers, body, _HTTP_CONFIG),
        check_stream(headers),
    ):
        if refusal is not None:
            assert refusal.status in _REFUSALS, refusal.status
            json.loads(refusal.body())
    is_modern(headers)
    message = _parse(body)
    if isinstance(message, JsonRpcRequest):
        error = check_request(message, headers)
        if error is not None:
            assert error.code in _LADDER_CODES, error.code
            assert error.request_id == message.id
            encode_message(error.as_response()).encode("utf-8")
