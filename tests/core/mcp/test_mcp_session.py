"""The MCP session state machine: handshake and version negotiation, what the protocol answers
itself, tool calls with cancellation, progress and partial results, logging, close, the
2026-07-28 (handshake-free) shape of results, and a hypothesis state machine over random
message sequences checking the per-request invariants."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import settings, stateful
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from diaproto.errors import LocalProtocolError
from diaproto.mcp.events import (
    CallCancelled,
    ClientReply,
    CompletionRequest,
    McpEvent,
    PromptGet,
    ResourceRead,
    TaskRequest,
    ToolCall,
)
from diaproto.mcp.features import Features, Tool
from diaproto.mcp.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    JsonRpcErrorResponse,
    JsonRpcResponse,
    RequestId,
    parse_message,
)
from diaproto.mcp.negotiation import CACHE_TTL_MS, ServerInfo
from diaproto.mcp.outbox import Outbound
from diaproto.mcp.prompts import Prompt, PromptArgument
from diaproto.mcp.protocol import (
    LOG_LEVELS,
    META_SERVER_INFO,
    PARTIAL_RESULT_METHOD,
    Kind,
)
from diaproto.mcp.resources import Resource, ResourceTemplate
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


# --- handshake -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_initialize_echoes_a_handshake_version(version: str) -> None:
    session = new_session()
    body = initialize(session, version, {"roots": {}})
    assert body["id"] == 0
    assert body["result"] == {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": False}, "logging": {}},
        "serverInfo": {"name": "diaproto-test", "version": "1.2"},
    }
    assert session.state is SessionState.INITIALIZING
    assert session.protocol_version == version
    assert session.client_capabilities == {"roots": {}}
    assert session.client_info == {"name": "test", "version": "0"}
    assert not session.modern
    send(session, method="notifications/initialized")
    assert session.state.value == "ready"  # (a new value: mypy narrowed the one above)


@pytest.mark.parametrize("version", ["1999-01-01", "2026-07-28", "2025-11-25-draft"])
def test_initialize_with_another_version_gets_the_latest_handshake(version: str) -> None:
    session = new_session()
    assert initialize(session, version)["result"]["protocolVersion"] == "2025-11-25"
    assert not session.modern


def test_instructions_are_sent_when_set() -> None:
    session = new_session(ServerInfo("s", "1", instructions="say hello"))
    assert initialize(session)["result"]["instructions"] == "say hello"


@pytest.mark.parametrize(
    "params",
    [
        {"protocolVersion": 5, "capabilities": {}, "clientInfo": {}},
        {"capabilities": {}, "clientInfo": {}},
        {"protocolVersion": "2025-11-25", "clientInfo": {}},
        {"protocolVersion": "2025-11-25", "capabilities": [], "clientInfo": {}},
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": "me"},
    ],
)
def test_initialize_with_bad_params_is_refused_and_leaves_the_session_new(
    params: dict[str, Any],
) -> None:
    session = new_session()
    send(session, id="i", method="initialize", params=params)
    assert error_code(session, "i") == INVALID_PARAMS
    assert session.state is SessionState.NEW
    assert initialize(session)["result"]["protocolVersion"] == "2025-11-25"


def test_initialize_without_params_is_refused() -> None:
    session = new_session()
    send(session, id=1, method="initialize")
    assert error_code(session, 1) == INVALID_PARAMS


@pytest.mark.parametrize("initialized", [False, True])
def test_a_second_initialize_is_refused(initialized: bool) -> None:
    session = new_session()
    initialize(session)
    if initialized:
        send(session, method="notifications/initialized")
    send(session, id=9, method="initialize", params={"protocolVersion": "2025-06-18"})
    assert error_code(session, 9) == INVALID_REQUEST
    assert session.protocol_version == "2025-11-25"


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("tools/list", None),
        ("tools/call", {"name": "speak", "arguments": {}}),
        ("logging/setLevel", {"level": "debug"}),
        ("bogus/method", None),
        ("server/discover", None),  # not a 2026-07-28 session
    ],
)
def test_requests_before_initialize_are_refused(method: str, params: Any) -> None:
    session = new_session()
    send(session, id=3, method=method, params=params)
    assert error_code(session, 3) == INVALID_REQUEST
    assert events(session) == []


def test_ping_is_answered_in_every_state() -> None:
    session = new_session()
    send(session, id="p", method="ping")
    assert only(session) == {"jsonrpc": "2.0", "id": "p", "result": {}}
    initialize(session)
    send(session, id="q", method="ping")
    assert only(session)["result"] == {}


def test_initialized_before_initialize_changes_nothing() -> None:
    session = new_session()
    send(session, method="notifications/initialized")
    assert session.state is SessionState.NEW
    assert outbound(session) == []


def test_other_notifications_and_client_responses_need_nothing() -> None:
    session = ready()
    send(session, method="notifications/roots/list_changed")
    send(session, method="notifications/progress", params={"progressToken": 1, "progress": 1})
    send(session, id=5, result={})
    send(session, id=5, error={"code": 1, "message": "no"})
    assert outbound(session) == []
    assert events(session) == []


# --- what the protocol answers itself ------------------------------------------------------


def test_unknown_method() -> None:
    session = ready()
    send(session, id=4, method="bogus/list")
    assert error_code(session, 4) == METHOD_NOT_FOUND


def test_tools_list() -> None:
    session = ready()
    send(session, id=2, method="tools/list")
    result = only(session)["result"]
    assert result == {
        "tools": [
            {
                "name": "speak",
                "description": "Speak text",
                "inputSchema": {"type": "object", "required": ["text"]},
            },
            {
                "name": "list_voices",
                "description": "The voices",
                "inputSchema": {"type": "object"},
                "title": "Voices",
                "annotations": {"readOnlyHint": True},
            },
        ]
    }


@pytest.mark.parametrize(
    "params",
    [
        {"name": "nope", "arguments": {}},
        {"name": 5, "arguments": {}},
        {"arguments": {}},
        {"name": "speak", "arguments": []},
        {"name": "speak", "arguments": None},
    ],
)
def test_tools_call_with_an_unknown_tool_or_bad_params(params: dict[str, Any]) -> None:
    session = ready()
    send(session, id=5, method="tools/call", params=params)
    assert error_code(session, 5) == INVALID_PARAMS
    assert events(session) == []
    assert session.in_flight == ()


def test_tools_call_hands_the_application_a_call() -> None:
    session = ready()
    send(session, id="c", method="tools/call", params={"name": "speak"})
    assert events(session) == [ToolCall("c", "speak", {}, None, None, {"name": "speak"})]
    assert session.in_flight == ("c",)


@pytest.mark.parametrize(
    ("meta", "token"),
    [({"progressToken": "t"}, "t"), ({"progressToken": 7}, 7), ({"progressToken": True}, None)],
)
def test_progress_tokens(meta: dict[str, Any], token: str | int | None) -> None:
    session = ready()
    params = {"name": "speak", "arguments": {"text": "x"}, "_meta": meta}
    send(session, id=1, method="tools/call", params=params)
    [event] = events(session)
    assert isinstance(event, ToolCall)
    assert event.progress_token == token


def test_a_meta_that_is_not_an_object_is_ignored() -> None:
    session = ready()
    send(session, id=1, method="tools/call", params={"name": "speak", "_meta": "x"})
    assert events(session) == [
        ToolCall(1, "speak", {}, None, None, {"name": "speak", "_meta": "x"})
    ]


def test_a_request_id_in_use_is_refused() -> None:
    session = ready()
    call(session, 1, progress="t")
    send(session, id=1, method="ping")
    assert error_code(session, 1) == INVALID_REQUEST
    assert session.in_flight == (1,)
    assert session.respond(1, {"content": []})
    assert only(session)["result"] == {"content": []}


# --- answering calls -----------------------------------------------------------------------


def test_respond_once() -> None:
    session = ready()
    call(session, 1)
    assert session.respond(1, {"content": [], "isError": False})
    [message] = outbound(session)
    assert (message.kind, message.related, message.final) == (Kind.RESPONSE, 1, True)
    assert parse_message(message.text) == JsonRpcResponse(1, {"content": [], "isError": False})
    assert session.in_flight == ()
    assert not session.respond(1, {})
    assert not session.fail(1, -32603, "late")
    assert outbound(session) == []


@pytest.mark.parametrize("failing", [False, True])
def test_a_final_carries_the_calls_progress_token(failing: bool) -> None:
    """So the channel can withdraw a progress report still queued for the call."""
    session = ready()
    call(session, 1, progress="tok")
    if failing:
        session.fail(1, -32603, "no")
    else:
        session.respond(1, {})
    [message] = outbound(session)
    assert (message.final, message.progress_token) == (True, "tok")


def test_fail_sends_the_error() -> None:
    session = ready()
    call(session, "f")
    assert session.fail("f", -32603, "broke", {"why": 1})
    [message] = outbound(session)
    assert message.final
    assert parse_message(message.text) == JsonRpcErrorResponse("f", -32603, "broke", {"why": 1})
    assert not session.fail("f", -32603, "again")


def test_respond_to_an_unknown_request() -> None:
    session = ready()
    assert not session.respond(99, {})
    assert outbound(session) == []


def test_refuse_answers_an_unparseable_message() -> None:
    session = new_session()
    session.refuse(JsonRpcErrorResponse(None, -32700, "parse error"))
    [message] = outbound(session)
    assert (message.kind, message.related, message.final) == (Kind.RESPONSE, None, True)
    assert json.loads(message.text)["error"]["code"] == -32700


# --- cancellation --------------------------------------------------------------------------


def test_cancel_stops_a_call_and_its_response() -> None:
    session = ready()
    call(session, 1, progress="t")
    send(session, method="notifications/cancelled", params={"requestId": 1, "reason": "bored"})
    assert events(session) == [CallCancelled(1, "bored")]
    assert session.in_flight == ()
    assert not session.respond(1, {"content": []})
    assert not session.progress(1, 0.5)
    assert outbound(session) == []


def test_cancel_without_a_string_reason() -> None:
    session = ready()
    call(session, "s")
    send(session, method="notifications/cancelled", params={"requestId": "s", "reason": 5})
    assert events(session) == [CallCancelled("s", None)]


@pytest.mark.parametrize(
    "params",
    [
        {"requestId": 2},  # unknown
        {"requestId": "1"},  # a string is not the integer id
        {"requestId": True},  # a bool is not id 1
        {"requestId": 1.0},
        {"requestId": None},
        {},
        None,
    ],
)
def test_cancelling_something_else_does_nothing(params: dict[str, Any] | None) -> None:
    session = ready()
    call(session, 1)
    send(session, method="notifications/cancelled", params=params)
    assert events(session) == []
    assert session.in_flight == (1,)


def test_initialize_cannot_be_cancelled() -> None:
    session = new_session()
    send(session, method="notifications/cancelled", params={"requestId": 0})
    initialize(session)
    send(session, method="notifications/cancelled", params={"requestId": 0})
    assert events(session) == []
    assert session.state is SessionState.INITIALIZING


def test_cancel_after_the_response_crossed_it() -> None:
    session = ready()
    call(session, 1)
    session.respond(1, {})
    outbound(session)
    send(session, method="notifications/cancelled", params={"requestId": 1})
    assert events(session) == []
    assert outbound(session) == []


# --- progress ------------------------------------------------------------------------------


def test_progress_strictly_increases() -> None:
    session = ready()
    call(session, 1, progress="tok")
    assert session.progress(1, 0.25)
    assert not session.progress(1, 0.25)  # equal
    assert not session.progress(1, 0.1)  # lower
    assert session.progress(1, 1, total=4, message="a quarter")
    sent = outbound(session)
    assert [(m.kind, m.related, m.progress_token, m.final) for m in sent] == [
        (Kind.PROGRESS, 1, "tok", False)
    ] * 2
    assert [json.loads(m.text) for m in sent] == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": "tok", "progress": 0.25},
        },
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": "tok", "progress": 1, "total": 4, "message": "a quarter"},
        },
    ]


def test_progress_needs_a_token_and_a_live_call() -> None:
    session = ready()
    call(session, 1)
    assert not session.progress(1, 0.5)
    assert not session.progress(2, 0.5)
    call(session, 3, progress=3)
    session.respond(3, {})
    assert not session.progress(3, 0.9)  # nothing after completion
    assert [m.kind for m in outbound(session)] == [Kind.RESPONSE]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True])
def test_progress_must_be_a_finite_number(value: float) -> None:
    session = ready()
    call(session, 1, progress="t")
    with pytest.raises(LocalProtocolError):
        session.progress(1, value)


# --- partial results (SEP-2998) ------------------------------------------------------------


@pytest.mark.parametrize(
    "capabilities", [{"partialResults": {}}, {"experimental": {"partialResults": {}}}]
)
def test_partial_results_with_the_capability_and_a_token(capabilities: dict[str, Any]) -> None:
    session = ready(capabilities)
    assert session.partial_results
    event = call(session, 1, partial="prt")
    assert event.partial_token == "prt"
    assert session.partial_result(1, [{"type": "text", "text": "a"}])
    assert session.partial_result(1, [{"type": "text", "text": "b"}])
    sent = outbound(session)
    assert [(m.kind, m.related, m.final) for m in sent] == [(Kind.PARTIAL, 1, False)] * 2
    notes = [json.loads(m.text) for m in sent]
    assert [n["method"] for n in notes] == [PARTIAL_RESULT_METHOD] * 2
    assert [n["params"]["seq"] for n in notes] == [0, 1]
    assert {n["params"]["partialResultToken"] for n in notes} == {"prt"}
    assert notes[1]["params"]["content"] == [{"type": "text", "text": "b"}]
    session.respond(1, {"content": []})
    assert not session.partial_result(1, [])


@pytest.mark.parametrize("capabilities", [{}, {"experimental": {}}, {"experimental": "x"}])
def test_no_partial_results_without_the_capability(capabilities: dict[str, Any]) -> None:
    session = ready(capabilities)
    assert not session.partial_results
    assert call(session, 1, partial="prt").partial_token is None
    assert not session.partial_result(1, [])
    assert outbound(session) == []


def test_no_partial_results_without_a_token() -> None:
    session = ready({"partialResults": {}})
    call(session, 1)
    assert not session.partial_result(1, [])
    assert not session.partial_result(2, [])


# --- logging -------------------------------------------------------------------------------


def test_log_filtering_and_set_level() -> None:
    session = ready()
    assert not session.log("debug", "hidden")  # the default level is info
    assert session.log("info", {"k": 1}, logger="speak")
    [message] = outbound(session)
    assert message.kind is Kind.LOG
    assert message.related is None
    assert json.loads(message.text)["params"] == {
        "level": "info",
        "data": {"k": 1},
        "logger": "speak",
    }
    send(session, id=8, method="logging/setLevel", params={"level": "error"})
    assert only(session)["result"] == {}
    assert session.log_level == "error"
    assert not session.log("warning", "w")
    assert session.log("emergency", "e")
    assert json.loads(outbound(session)[0].text)["params"] == {"level": "emergency", "data": "e"}


@pytest.mark.parametrize("params", [{"level": "loud"}, {"level": None}, {}, None])
def test_set_level_refuses_unknown_levels(params: dict[str, Any] | None) -> None:
    session = ready()
    send(session, id=8, method="logging/setLevel", params=params)
    assert error_code(session, 8) == INVALID_PARAMS
    assert session.log_level == "info"


def test_log_refuses_an_unknown_level() -> None:
    with pytest.raises(LocalProtocolError):
        ready().log("loud", "x")


def test_every_level_is_known() -> None:
    session = ready()
    send(session, id=1, method="logging/setLevel", params={"level": "debug"})
    outbound(session)
    assert all(session.log(level, level) for level in LOG_LEVELS)


# --- close ---------------------------------------------------------------------------------


def test_close_cancels_calls_and_drops_what_is_queued() -> None:
    session = ready()
    call(session, 1, progress="t")
    call(session, "two")
    session.progress(1, 0.5)
    session.close()
    assert session.state is SessionState.CLOSED
    assert events(session) == [
        CallCancelled(1, "the session ended"),
        CallCancelled("two", "the session ended"),
    ]
    assert session.in_flight == ()
    assert outbound(session) == []
    assert not session.respond(1, {})
    assert not session.log("emergency", "gone")
    send(session, id=5, method="ping")
    assert outbound(session) == []
    session.close()
    assert events(session) == []


# --- 2026-07-28: no handshake, every result says who answered ------------------------------


def modern(capabilities: dict[str, Any] | None = None, info: ServerInfo = INFO) -> McpSession:
    return McpSession.ready(info, (SPEAK,), MODERN, capabilities or {})


def test_modern_session_shape() -> None:
    session = modern({"partialResults": {}})
    assert session.modern
    assert session.state is SessionState.READY
    assert session.log_level is None
    assert session.partial_results


def test_discover() -> None:
    session = modern(info=ServerInfo("s", "2", instructions="hello"))
    send(session, id=1, method="server/discover")
    assert only(session)["result"] == {
        "resultType": "complete",
        "supportedVersions": ["2026-07-28"],
        "capabilities": {"tools": {"listChanged": False}, "logging": {}},
        "ttlMs": CACHE_TTL_MS,
        "cacheScope": "public",
        "instructions": "hello",
        "_meta": {META_SERVER_INFO: {"name": "s", "version": "2"}},
    }


def test_discover_without_instructions() -> None:
    session = modern()
    send(session, id=1, method="server/discover")
    assert "instructions" not in only(session)["result"]


def test_modern_tools_list_is_cacheable() -> None:
    session = modern()
    send(session, id=1, method="tools/list")
    result = only(session)["result"]
    assert (result["ttlMs"], result["cacheScope"], result["resultType"]) == (
        CACHE_TTL_MS,
        "public",
        "complete",
    )
    assert result["_meta"] == {META_SERVER_INFO: {"name": "diaproto-test", "version": "1.2"}}
    assert [tool["name"] for tool in result["tools"]] == ["speak"]


def test_modern_results_keep_the_application_meta() -> None:
    session = modern()
    call(session, 1)
    session.respond(1, {"content": [], "_meta": {"k": "v"}, "resultType": "partial"})
    result = only(session)["result"]
    assert result["resultType"] == "partial"  # the application's own word stands
    assert result["_meta"] == {
        "k": "v",
        META_SERVER_INFO: {"name": "diaproto-test", "version": "1.2"},
    }


def test_modern_errors_and_ping() -> None:
    session = modern()
    send(session, id=1, method="ping")
    assert only(session)["result"]["resultType"] == "complete"
    send(session, id=2, method="initialize", params={})
    assert error_code(session, 2) == INVALID_REQUEST
    send(session, id=3, method="bogus")
    assert error_code(session, 3) == METHOD_NOT_FOUND


def test_modern_sends_no_logs_unless_asked() -> None:
    session = modern()
    assert not session.log("emergency", "x")
    send(session, id=1, method="logging/setLevel", params={"level": "warning"})
    outbound(session)
    assert session.log("warning", "now")


def test_discover_is_a_modern_method() -> None:
    session = ready()
    send(session, id=1, method="server/discover")
    assert error_code(session, 1) == METHOD_NOT_FOUND


# --- resources, prompts, completion ---------------------------------------------------------

TEXT = Resource("test://text", "text", "Text", "Some text", "text/plain")
TEMPLATE = ResourceTemplate("test://item/{id}/data", "item", mime_type="application/json")
GREET = Prompt("greet", "Greet", "Says hello", (PromptArgument("name", required=True),))
FEATURES = Features((TEXT,), (TEMPLATE,), (GREET,), completions=True)


def featured(capabilities: dict[str, Any] | None = None) -> McpSession:
    session = McpSession(INFO, (SPEAK,), features=FEATURES)
    initialize(session, capabilities=capabilities)
    send(session, method="notifications/initialized")
    return session


def test_features_are_declared_and_listed() -> None:
    session = McpSession(INFO, (SPEAK,), features=FEATURES)
    capabilities = initialize(session)["result"]["capabilities"]
    assert capabilities == {
        "tools": {"listChanged": False},
        "logging": {},
        "resources": {"listChanged": False, "subscribe": True},
        "prompts": {"listChanged": False},
        "completions": {},
    }
    send(session, method="notifications/initialized")
    send(session, id=1, method="resources/list")
    assert only(session)["result"] == {"resources": [TEXT.describe()]}
    send(session, id=2, method="resources/templates/list")
    assert only(session)["result"] == {
        "resourceTemplates": [
            {"uriTemplate": "test://item/{id}/data", "name": "item", "mimeType": "application/json"}
        ]
    }
    send(session, id=3, method="prompts/list")
    assert only(session)["result"] == {
        "prompts": [
            {
                "name": "greet",
                "title": "Greet",
                "description": "Says hello",
                "arguments": [{"name": "name", "required": True}],
            }
        ]
    }


@pytest.mark.parametrize(
    "method",
    [
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
    ],
)
def test_features_not_offered_are_unknown_methods(method: str) -> None:
    session = ready()
    send(session, id=1, method=method, params={"uri": "test://text", "name": "greet"})
    assert error_code(session, 1) == METHOD_NOT_FOUND


def test_resource_reads_go_to_the_application() -> None:
    session = featured()
    send(session, id=1, method="resources/read", params={"uri": "test://item/7/data"})
    [event] = events(session)
    assert event == ResourceRead(1, "test://item/7/data", {"uri": "test://item/7/data"})
    assert session.in_flight == (1,)
    assert session.respond(1, {"contents": []})
    assert only(session)["result"] == {"contents": []}


@pytest.mark.parametrize(
    ("params", "data"),
    [
        ({"uri": "test://nothing"}, {"uri": "test://nothing"}),
        ({"uri": "test://item/a/b/data"}, {"uri": "test://item/a/b/data"}),
        ({"uri": 5}, None),
        (None, None),
    ],
)
def test_unknown_or_malformed_resource_reads(params: dict[str, Any] | None, data: Any) -> None:
    session = featured()
    send(session, id=1, method="resources/read", params=params)
    body = only(session)
    assert body["error"]["code"] == INVALID_PARAMS  # SEP-2164, not -32002
    assert body["error"].get("data") == data
    assert events(session) == []


def test_subscriptions_and_updates() -> None:
    session = featured()
    assert not session.resource_updated("test://text")
    send(session, id=1, method="resources/subscribe", params={"uri": "test://text"})
    assert only(session)["result"] == {}
    assert session.subscriptions == {"test://text"}
    assert session.resource_updated("test://text")
    [update] = outbound(session)
    assert json.loads(update.text)["params"] == {"uri": "test://text"}
    assert update.kind is Kind.CONTROL
    send(session, id=2, method="resources/unsubscribe", params={"uri": "test://text"})
    assert only(session)["result"] == {}
    assert not session.resource_updated("test://text")
    send(session, id=3, method="resources/subscribe", params={})
    assert error_code(session, 3) == INVALID_PARAMS
    session.subscriptions.add("test://text")
    session.close()
    assert not session.resource_updated("test://text")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"name": "nope"}, INVALID_PARAMS),
        ({"name": 3}, INVALID_PARAMS),
        ({"name": "greet"}, INVALID_PARAMS),  # its required argument is missing
        ({"name": "greet", "arguments": []}, INVALID_PARAMS),
    ],
)
def test_bad_prompt_gets(params: dict[str, Any], code: int) -> None:
    session = featured()
    send(session, id=1, method="prompts/get", params=params)
    assert error_code(session, 1) == code
    assert events(session) == []


def test_prompt_gets_go_to_the_application() -> None:
    session = featured()
    params = {"name": "greet", "arguments": {"name": "Ada"}}
    send(session, id=1, method="prompts/get", params=params)
    assert events(session) == [PromptGet(1, "greet", {"name": "Ada"}, params)]
    assert session.fail(1, INVALID_PARAMS, "no")
    assert error_code(session, 1) == INVALID_PARAMS


def test_completion() -> None:
    session = featured()
    params = {"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "name"}}
    send(session, id=1, method="completion/complete", params=params)
    assert events(session) == [CompletionRequest(1, params["ref"], params["argument"], params)]
    send(session, id=2, method="completion/complete", params={"ref": "greet"})
    assert error_code(session, 2) == INVALID_PARAMS


def test_modern_features_are_cacheable_and_have_no_subscriptions() -> None:
    session = McpSession.ready(INFO, (SPEAK,), MODERN, {}, FEATURES)
    send(session, id=1, method="server/discover")
    capabilities = only(session)["result"]["capabilities"]
    assert capabilities["resources"] == {"listChanged": False}
    for request_id, method in enumerate(("resources/list", "prompts/list"), 2):
        send(session, id=request_id, method=method)
        assert only(session)["result"]["cacheScope"] == "public"
    send(session, id=5, method="resources/subscribe", params={"uri": "test://text"})
    assert error_code(session, 5) == METHOD_NOT_FOUND  # 2026-07-28: subscriptions/listen
    send(session, id=6, method="resources/read", params={"uri": "test://text"})
    events(session)
    session.respond(6, {"contents": []})
    result = only(session)["result"]
    assert (result["ttlMs"], result["cacheScope"]) == (0, "private")  # unless the app says
    send(session, id=7, method="resources/read", params={"uri": "test://text"})
    session.respond(7, {"contents": [], "ttlMs": 5, "cacheScope": "public"})
    result = only(session)["result"]
    assert (result["ttlMs"], result["cacheScope"]) == (5, "public")


# --- asking the client: sampling, elicitation, roots -----------------------------------------


def test_requests_to_the_client_and_their_replies() -> None:
    session = ready({"sampling": {}, "elicitation": {}})
    call(session, "c")
    asked = session.request("sampling/createMessage", {"maxTokens": 5}, related="c")
    assert asked is not None
    [message] = outbound(session)
    assert (message.kind, message.related, message.final) == (Kind.CONTROL, "c", False)
    body = json.loads(message.text)
    assert body == {
        "jsonrpc": "2.0",
        "id": asked,
        "method": "sampling/createMessage",
        "params": {"maxTokens": 5},
    }
    send(session, id=asked, result={"content": {"type": "text", "text": "hi"}})
    assert events(session) == [
        ClientReply(
            asked, "sampling/createMessage", "c", {"content": {"type": "text", "text": "hi"}}
        )
    ]
    send(session, id=asked, result={})  # answered already: nothing waits for it
    assert events(session) == []
    second = session.request("elicitation/create")
    assert second is not None and second != asked
    outbound(session)
    send(session, id=second, error={"code": -1, "message": "declined"})
    [reply] = events(session)
    assert isinstance(reply, ClientReply)
    assert reply.result is None and reply.error is not None and reply.error.message == "declined"
    third = session.request("ping")
    assert third is not None
    outbound(session)
    send(session, id=third, result=[1])  # not an object: an empty result
    assert events(session) == [ClientReply(third, "ping", None, {})]


def test_the_client_is_not_asked_what_it_cannot_answer() -> None:
    session = ready({"sampling": {}})
    assert session.request("elicitation/create") is None  # not declared
    assert session.request("roots/list") is None
    assert session.request("sampling/createMessage", related="gone") is None  # no such call
    assert outbound(session) == []
    fresh = new_session()
    assert fresh.request("ping") is None  # not initialized
    assert modern({"sampling": {}}).request("sampling/createMessage") is None  # 2026: MRTR
    asked = session.request("sampling/createMessage")
    session.close()
    send(session, id=asked, result={})
    assert events(session) == []


# --- 2026-07-28: retries of input-required requests, logs per request -----------------------


@pytest.mark.parametrize(
    "params",
    [
        {"inputResponses": None},
        {"inputResponses": 5},
        {"inputResponses": {"user_name": 12345}},
        {"requestState": 7},
    ],
)
def test_malformed_retries_are_invalid_params(params: dict[str, Any]) -> None:
    session = modern()
    send(session, id=1, method="tools/call", params={"name": "speak", **params})
    assert error_code(session, 1) == INVALID_PARAMS
    assert events(session) == []


def test_a_retry_reaches_the_application_whole() -> None:
    session = modern()
    params = {
        "name": "speak",
        "arguments": {},
        "inputResponses": {"confirm": {"action": "accept"}},
        "requestState": "sealed",
    }
    send(session, id=1, method="tools/call", params=params)
    [event] = events(session)
    assert isinstance(event, ToolCall) and event.params == params


def test_modern_logs_need_the_requests_level() -> None:
    session = modern()
    meta = {"io.modelcontextprotocol/logLevel": "warning"}
    send(session, id=1, method="tools/call", params={"name": "speak", "_meta": meta})
    events(session)
    assert not session.log("info", "quiet")
    assert session.log("error", "loud", related=1)
    [line] = outbound(session)
    assert (line.kind, line.related) == (Kind.LOG, 1)
    send(session, id=2, method="tools/call", params={"name": "speak"})
    assert not session.log("emergency", "none asked")


# --- 2026-07-28: tasks (SEP-2663) ------------------------------------------------------------

SLOW = Tool("slow", "Takes long", {"type": "object"}, task_support="optional")
ONLY_TASK = Tool("only_task", "Only as a task", {"type": "object"}, task_support="required")
WITH_TASKS = Features(tasks=True)
TASK_CAPABILITIES: dict[str, Any] = {"extensions": {"io.modelcontextprotocol/tasks": {}}}


def tasking(capabilities: dict[str, Any] | None = None, version: str = MODERN) -> McpSession:
    return McpSession.ready(INFO, (SPEAK, SLOW, ONLY_TASK), version, capabilities or {}, WITH_TASKS)


def test_tasks_are_declared_as_an_extension_at_2026_only() -> None:
    session = tasking()
    send(session, id=1, method="server/discover")
    capabilities = only(session)["result"]["capabilities"]
    assert capabilities["extensions"] == {"io.modelcontextprotocol/tasks": {}}
    assert "tasks" not in capabilities
    handshake = McpSession(INFO, (SPEAK,), features=WITH_TASKS)
    assert "extensions" not in initialize(handshake)["result"]["capabilities"]


@pytest.mark.parametrize(
    ("name", "capabilities", "task"),
    [
        ("slow", TASK_CAPABILITIES, True),
        ("slow", {}, False),  # optional: a plain call for a client without the extension
        ("speak", TASK_CAPABILITIES, False),  # never a task
        ("only_task", TASK_CAPABILITIES, True),
    ],
)
def test_which_calls_may_become_tasks(name: str, capabilities: dict[str, Any], task: bool) -> None:
    session = tasking(capabilities)
    send(session, id=1, method="tools/call", params={"name": name})
    [event] = events(session)
    assert isinstance(event, ToolCall) and event.task is task


def test_a_task_only_tool_needs_the_extension() -> None:
    for session in (tasking(), McpSession.ready(INFO, (ONLY_TASK,), MODERN, TASK_CAPABILITIES)):
        send(session, id=1, method="tools/call", params={"name": "only_task"})
        body = only(session)
        assert body["error"]["code"] == MISSING_CLIENT_CAPABILITY
        assert body["error"]["data"] == {"requiredCapabilities": TASK_CAPABILITIES}
        assert events(session) == []


@pytest.mark.parametrize("method", ["tasks/get", "tasks/update", "tasks/cancel"])
def test_task_methods(method: str) -> None:
    session = tasking()
    send(session, id=1, method=method, params={"taskId": "t"})
    assert error_code(session, 1) == MISSING_CLIENT_CAPABILITY
    session = tasking(TASK_CAPABILITIES)
    send(session, id=2, method=method, params={"taskId": 5})
    assert error_code(session, 2) == INVALID_PARAMS
    send(session, id=3, method=method, params={"taskId": "t"})
    assert events(session) == [TaskRequest(3, method, "t", {"taskId": "t"})]
    assert session.respond(3, {})
    assert only(session)["result"]["resultType"] == "complete"


@pytest.mark.parametrize("method", ["tasks/result", "tasks/list"])
def test_removed_and_unoffered_task_methods_are_unknown(method: str) -> None:
    session = tasking(TASK_CAPABILITIES)
    send(session, id=1, method=method, params={"taskId": "t"})
    assert error_code(session, 1) == METHOD_NOT_FOUND
    session = modern(TASK_CAPABILITIES)  # no tasks offered
    send(session, id=2, method="tasks/get", params={"taskId": "t"})
    assert error_code(session, 2) == METHOD_NOT_FOUND


# --- random sequences ----------------------------------------------------------------------

PROGRESS_VALUES = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.5])


class SessionMachine(RuleBasedStateMachine):
    """Drives one session with random client messages and application calls, and checks
    what comes out against the per-request rules."""

    @stateful.initialize(partial=st.booleans(), modern_era=st.booleans())
    def start(self, partial: bool, modern_era: bool) -> None:
        capabilities: dict[str, Any] = {"partialResults": {}} if partial else {}
        if modern_era:
            self.session = McpSession.ready(INFO, (SPEAK,), MODERN, capabilities)
        else:
            self.session = new_session()
            initialize(self.session, capabilities=capabilities)
            send(self.session, method="notifications/initialized")
        self.next_id = 100
        self.in_flight: set[RequestId] = set()
        self.known: list[RequestId] = [0]  # initialize's id
        self.cancelled: set[RequestId] = set()
        self.finals: set[RequestId] = set()
        self.last_progress: dict[RequestId, float] = {}
        self.partial_seq: dict[RequestId, int] = {}
        self.closed = False

    def _fresh(self, as_text: bool) -> RequestId:
        self.next_id += 1
        request_id: RequestId = f"r{self.next_id}" if as_text else self.next_id
        self.known.append(request_id)
        return request_id

    def _pick(self, data: st.DataObject) -> RequestId:
        """Mostly a call in flight (where the rules bite), sometimes any other id."""
        others = st.sampled_from([*self.known, "never-sent", -1])
        if not self.in_flight:
            return data.draw(others)
        live = st.sampled_from(sorted(self.in_flight, key=str))
        return data.draw(st.one_of(live, live, others))

    @rule(as_text=st.booleans(), progress=st.booleans(), partial=st.booleans())
    def call_tool(self, as_text: bool, progress: bool, partial: bool) -> None:
        request_id = self._fresh(as_text)
        meta: dict[str, Any] = {}
        if progress:
            meta["progressToken"] = f"p-{request_id}"
        if partial:
            meta["partialResultToken"] = f"q-{request_id}"
        params = {"name": "speak", "arguments": {}, "_meta": meta}
        send(self.session, id=request_id, method="tools/call", params=params)
        if not self.closed:
            self.in_flight.add(request_id)

    @rule(as_text=st.booleans(), method=st.sampled_from(["ping", "tools/list", "nope/x"]))
    def protocol_request(self, as_text: bool, method: str) -> None:
        send(self.session, id=self._fresh(as_text), method=method)

    @rule(as_text=st.booleans())
    def unknown_tool(self, as_text: bool) -> None:
        params = {"name": "nope", "arguments": {}}
        send(self.session, id=self._fresh(as_text), method="tools/call", params=params)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        # What was queued before the cancel arrived may still go (the two cross on the
        # wire): deliver it first, then hold the session to silence about the request.
        self.flush()
        request_id = self._pick(data)
        send(self.session, method="notifications/cancelled", params={"requestId": request_id})
        if request_id in self.in_flight:
            self.in_flight.discard(request_id)
            self.cancelled.add(request_id)
            assert self._events() == [CallCancelled(request_id, None)]

    @rule(data=st.data(), failing=st.booleans())
    def answer(self, data: st.DataObject, failing: bool) -> None:
        request_id = self._pick(data)
        if failing:
            sent = self.session.fail(request_id, -32603, "no")
        else:
            sent = self.session.respond(request_id, {"content": []})
        assert sent == (request_id in self.in_flight)
        self.in_flight.discard(request_id)

    @rule(data=st.data(), values=st.lists(PROGRESS_VALUES, min_size=1, max_size=4))
    def progress(self, data: st.DataObject, values: list[float]) -> None:
        request_id = self._pick(data)
        for value in values:  # a few in a row: equal and lower values come up often
            if self.session.progress(request_id, value):
                assert request_id in self.in_flight

    @rule(data=st.data())
    def partial(self, data: st.DataObject) -> None:
        request_id = self._pick(data)
        if self.session.partial_result(request_id, [{"type": "text", "text": "x"}]):
            assert request_id in self.in_flight

    @rule(level=st.sampled_from(LOG_LEVELS))
    def log(self, level: str) -> None:
        self.session.log(level, "line")

    @rule(level=st.sampled_from(LOG_LEVELS))
    def set_level(self, level: str) -> None:
        send(
            self.session, id=self._fresh(False), method="logging/setLevel", params={"level": level}
        )

    @precondition(lambda self: len(self.known) > 12)  # late, or little happens before
    @rule()
    def close(self) -> None:
        self.session.close()
        assert outbound(self.session) == []  # what was queued is dropped with the session
        events = self._events()
        expected = set() if self.closed else self.in_flight
        assert len(events) == len(expected)
        assert set(events) == {CallCancelled(r, "the session ended") for r in expected}
        self.cancelled |= self.in_flight
        self.in_flight.clear()
        self.closed = True

    def _events(self) -> list[McpEvent]:
        return events(self.session)

    @rule()
    def flush(self) -> None:
        """The transport takes what the session queued; check it message by message."""
        for message in outbound(self.session):
            body = json.loads(message.text)
            related = message.related
            assert related not in self.finals, f"{message} after the final of {related}"
            assert related not in self.cancelled, f"{message} for a cancelled request"
            if message.kind is Kind.LOG:
                assert related is None
                continue
            assert related is not None  # every message but a log line is about a request
            if message.final:
                assert message.kind is Kind.RESPONSE
                assert body["id"] == related
                self.finals.add(related)
            elif message.kind is Kind.PROGRESS:
                value = body["params"]["progress"]
                assert value > self.last_progress.get(related, -1.0)
                self.last_progress[related] = value
            else:
                assert message.kind is Kind.PARTIAL
                assert body["params"]["seq"] == self.partial_seq.get(related, 0)
                self.partial_seq[related] = body["params"]["seq"] + 1

    @invariant()
    def in_flight_matches(self) -> None:
        if not hasattr(self, "session"):
            return
        assert set(self.session.in_flight) == self.in_flight
        for event in self._events():
            assert isinstance(event, ToolCall)
            assert event.request_id in self.in_flight
        if self.closed:
            assert self.session.in_flight == ()


SessionMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40)
test_session_machine = SessionMachine.TestCase
