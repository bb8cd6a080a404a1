"""The service's catalog (apps/mcp/catalog.py) without a network: resources, prompts and
completion answered through a session, and the task API (start, input, cancel, finish,
fail) as the tasks methods see it. The official suite exercises the same over HTTP
(test_official_conformance.py); this runs without node."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from diaproto.apps.mcp.catalog import MAX_COMPLETIONS, Catalog, TaskWork
from diaproto.apps.mcp.peer import McpPeer
from diaproto.mcp import JsonRpcError, McpSession, ServerInfo, Tool, ToolCall, parse_message
from diaproto.mcp.events import CompletionRequest, PromptGet, ResourceRead, TaskRequest
from diaproto.mcp.jsonrpc import INVALID_PARAMS
from diaproto.mcp.mrtr import input_request
from diaproto.mcp.prompts import Prompt, PromptArgument
from diaproto.mcp.resources import Resource, ResourceTemplate

INFO = ServerInfo("catalog-test", "1")
TASKS: dict[str, Any] = {"extensions": {"io.modelcontextprotocol/tasks": {}}}
SLOW = Tool("slow", "slow", {"type": "object"}, task_support="optional")


@dataclass
class FakePeer:
    """What the catalog uses of a peer: its session, and pump (here: collect the answers)."""

    session: McpSession
    sent: list[dict[str, Any]] = field(default_factory=list)

    def pump(self, now: float) -> None:
        while (message := self.session.next_outbound()) is not None:
            self.sent.append(json.loads(message.text))


def as_peer(peer: FakePeer) -> McpPeer:
    return cast(McpPeer, peer)


def session_for(catalog: Catalog, capabilities: dict[str, Any] | None = None) -> McpSession:
    return McpSession.ready(INFO, (SLOW,), "2026-07-28", capabilities or {}, catalog.features)


def ask(catalog: Catalog, method: str, params: dict[str, Any], caps: Any = None) -> Any:
    """One request through a fresh 2026-07-28 session and the catalog; its answer."""
    peer = FakePeer(session_for(catalog, caps))
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    peer.session.receive(parse_message(json.dumps(body)))
    while (event := peer.session.next_event()) is not None:
        assert isinstance(event, ResourceRead | PromptGet | CompletionRequest | TaskRequest)
        catalog.handle(as_peer(peer), event, 0.0)
    peer.pump(0.0)
    [answer] = peer.sent
    return answer


def catalog_with_content() -> Catalog:
    catalog = Catalog()
    catalog.add_resource(
        Resource("test://a", "a"), lambda read: {"contents": [{"uri": read.uri, "text": "A"}]}
    )
    catalog.add_template(
        ResourceTemplate("test://item/{id}", "item"),
        lambda read: {"contents": [{"uri": read.uri, "text": read.uri.rsplit("/", 1)[1]}]},
    )

    def refuse(read: ResourceRead) -> dict[str, Any]:
        raise JsonRpcError(INVALID_PARAMS, "gone", data={"uri": read.uri})

    catalog.add_resource(Resource("test://gone", "gone"), refuse)
    catalog.add_prompt(
        Prompt("hi", arguments=(PromptArgument("name", required=True),)),
        lambda get: {"messages": [{"role": "user", "content": get.arguments["name"]}]},
    )
    catalog.set_completer(lambda request: [f"v{n}" for n in range(MAX_COMPLETIONS + 5)])
    return catalog


def test_reads_prompts_and_completion() -> None:
    catalog = catalog_with_content()
    assert ask(catalog, "resources/read", {"uri": "test://a"})["result"]["contents"][0] == {
        "uri": "test://a",
        "text": "A",
    }
    read = ask(catalog, "resources/read", {"uri": "test://item/42"})["result"]
    assert read["contents"][0]["text"] == "42"
    assert read["cacheScope"] == "private"  # the session's default for 2026-07-28
    refused = ask(catalog, "resources/read", {"uri": "test://gone"})["error"]
    assert refused == {"code": INVALID_PARAMS, "message": "gone", "data": {"uri": "test://gone"}}
    got = ask(catalog, "prompts/get", {"name": "hi", "arguments": {"name": "Ada"}})
    assert got["result"]["messages"][0]["content"] == "Ada"
    params = {"ref": {"type": "ref/prompt", "name": "hi"}, "argument": {"name": "name"}}
    completion = ask(catalog, "completion/complete", params)["result"]["completion"]
    assert len(completion["values"]) == MAX_COMPLETIONS
    assert (completion["total"], completion["hasMore"]) == (MAX_COMPLETIONS + 5, True)


def test_a_read_the_catalog_cannot_route_is_not_found() -> None:
    catalog = catalog_with_content()
    event = ResourceRead(1, "test://nowhere")
    with pytest.raises(JsonRpcError) as refused:
        catalog.answer(event)
    assert refused.value.data == {"uri": "test://nowhere"}


def test_nothing_is_offered_twice() -> None:
    catalog = catalog_with_content()
    with pytest.raises(ValueError, match="already offered"):
        catalog.add_resource(Resource("test://a", "again"), lambda read: {})
    with pytest.raises(ValueError, match="already offered"):
        catalog.add_prompt(Prompt("hi"), lambda get: {})
    with pytest.raises(ValueError, match="not enabled"):
        peer = as_peer(FakePeer(session_for(catalog)))
        catalog.start_task(peer, ToolCall(1, "slow", {}, None, None), 0.0)


def start(catalog: Catalog, work: TaskWork | None = None) -> tuple[str, dict[str, Any]]:
    peer = FakePeer(session_for(catalog, TASKS))
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow"}}
    peer.session.receive(parse_message(json.dumps(body)))
    call = peer.session.next_event()
    assert isinstance(call, ToolCall) and call.task
    task = catalog.start_task(as_peer(peer), call, 0.0, work)
    [created] = peer.sent
    return task.task_id, created["result"]


def test_tasks_through_the_catalog() -> None:
    catalog = Catalog()
    catalog.clock = lambda: 1_700_000_000.0
    catalog.enable_tasks()
    assert session_for(catalog).features.tasks
    events: list[str] = []
    work = TaskWork(
        on_cancel=lambda: events.append("cancelled"),
        on_input=lambda taken, now: events.append(f"input {sorted(taken)}"),
    )
    task_id, created = start(catalog, work)
    assert created["resultType"] == "task" and created["status"] == "working"
    assert "result" not in created and "requestState" not in created

    def get(task_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = ask(catalog, "tasks/get", {"taskId": task_id}, TASKS)
        return answer

    assert get(task_id)["result"]["status"] == "working"
    assert catalog.task_needs_input(task_id, {"ok": input_request("elicitation/create")})
    assert get(task_id)["result"]["inputRequests"] == {
        "ok": {"method": "elicitation/create", "params": {}}
    }
    ack = ask(catalog, "tasks/update", {"taskId": task_id, "inputResponses": {"ok": {}}}, TASKS)
    assert ack["result"] == {"resultType": "complete", "_meta": ack["result"]["_meta"]}
    assert events == ["input ['ok']"]
    assert catalog.finish_task(task_id, {"content": [{"type": "text", "text": "done"}]})
    assert get(task_id)["result"]["result"]["content"][0]["text"] == "done"
    ask(catalog, "tasks/cancel", {"taskId": task_id}, TASKS)  # terminal: an ack, no cancel
    assert events == ["input ['ok']"]

    running, _ = start(catalog, work)
    ask(catalog, "tasks/cancel", {"taskId": running}, TASKS)
    assert events[-1] == "cancelled"
    assert get(running)["result"]["status"] == "cancelled"
    assert not catalog.finish_task(running, {"content": []})  # it stays cancelled

    broken, _ = start(catalog)
    assert catalog.fail_task(broken, -32603, "broke")
    assert get(broken)["result"]["error"] == {"code": -32603, "message": "broke"}
    unknown = get("nope")["error"]
    assert (unknown["code"], unknown["data"]) == (INVALID_PARAMS, {"taskId": "nope"})
    update = ask(catalog, "tasks/update", {"taskId": broken, "inputResponses": {}}, TASKS)
    assert update["result"]["resultType"] == "complete"


def test_a_catalog_without_tasks_refuses_them() -> None:
    catalog = Catalog()
    assert not catalog.finish_task("t", {})
    assert not catalog.fail_task("t", -1, "x")
    assert not catalog.task_needs_input("t", {"a": {}})
    peer = FakePeer(McpSession.ready(INFO, (), "2026-07-28", TASKS))
    catalog.handle(as_peer(peer), TaskRequest(1, "tasks/get", "t"), 0.0)
    peer.pump(0.0)
    assert peer.sent == []  # nothing in flight to answer: the session sends nothing
