"""Where a client's request goes: tools, resources, prompts, completion and tasks, each
answered by the protocol, refused, or handed to the application as an event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp_session_support import (
    INFO,
    MODERN,
    SPEAK,
    error_code,
    events,
    initialize,
    modern,
    only,
    outbound,
    ready,
    send,
)

from diaproto.mcp.events import CompletionRequest, PromptGet, ResourceRead, TaskRequest, ToolCall
from diaproto.mcp.features import Features, Tool
from diaproto.mcp.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, MISSING_CLIENT_CAPABILITY
from diaproto.mcp.prompts import Prompt, PromptArgument
from diaproto.mcp.protocol import Kind
from diaproto.mcp.resources import Resource, ResourceTemplate
from diaproto.mcp.session import McpSession

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
