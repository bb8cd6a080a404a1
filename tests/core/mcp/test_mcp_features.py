"""What an MCP server offers besides tools, as values: resources and URI templates, prompts,
the capabilities they declare; SEP-2322's input-required helpers and sealed state; and
SEP-2663's task store."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from diaproto.mcp.features import Features
from diaproto.mcp.mrtr import (
    INPUT_REQUIRED,
    StateSigner,
    client_can,
    input_request,
    input_required,
    retry_problem,
)
from diaproto.mcp.prompts import Prompt, PromptArgument
from diaproto.mcp.resources import Resource, ResourceTemplate
from diaproto.mcp.tasks import TASKS_EXTENSION, TaskStore, negotiated

TEMPLATE = ResourceTemplate("test://template/{id}/data/{part}", "t", "T", "d", "text/plain")


def test_resource_descriptions_carry_only_what_is_set() -> None:
    assert Resource("test://a", "a").describe() == {"uri": "test://a", "name": "a"}
    assert Resource("test://a", "a", "A", "about a", "text/plain").describe() == {
        "uri": "test://a",
        "name": "a",
        "title": "A",
        "description": "about a",
        "mimeType": "text/plain",
    }
    assert TEMPLATE.describe()["uriTemplate"] == "test://template/{id}/data/{part}"


@pytest.mark.parametrize(
    ("uri", "variables"),
    [
        ("test://template/7/data/x", {"id": "7", "part": "x"}),
        ("test://template/a.b/data/c-d", {"id": "a.b", "part": "c-d"}),
        ("test://template//data/x", None),  # a variable is never empty
        ("test://template/1/2/data/x", None),  # nor spans a "/"
        ("test://template/7/data/x/more", None),
        ("test://templateX7/data/x", None),  # the literal parts are literal
    ],
)
def test_template_matching(uri: str, variables: dict[str, str] | None) -> None:
    assert TEMPLATE.variables == ("id", "part")
    assert TEMPLATE.match(uri) == variables


def test_prompts_describe_and_check_arguments() -> None:
    prompt = Prompt(
        "p",
        "P",
        "a prompt",
        (PromptArgument("a", "first", required=True), PromptArgument("b")),
    )
    assert prompt.describe() == {
        "name": "p",
        "title": "P",
        "description": "a prompt",
        "arguments": [
            {"name": "a", "required": True, "description": "first"},
            {"name": "b", "required": False},
        ],
    }
    assert Prompt("bare").describe() == {"name": "bare"}
    assert prompt.missing({}) == ["a"]
    assert prompt.missing({"a": "x"}) == []


def test_features_find_what_serves_a_request() -> None:
    fixed = Resource("test://template/1/data/2", "fixed")
    features = Features((fixed,), (TEMPLATE,), (Prompt("p"),))
    assert features.resource("test://template/1/data/2") is fixed  # fixed URIs first
    assert features.resource("test://template/3/data/4") is TEMPLATE
    assert features.resource("test://other") is None
    assert features.prompt("p") == Prompt("p")
    assert features.prompt("q") is None
    assert Features().capabilities(subscribe=True) == {}
    assert Features(templates=(TEMPLATE,)).capabilities(subscribe=False) == {
        "resources": {"listChanged": False}
    }


def test_input_required_results() -> None:
    ask = {"name": input_request("elicitation/create", {"message": "Name?"})}
    assert input_required(ask) == {
        "resultType": INPUT_REQUIRED,
        "inputRequests": {"name": {"method": "elicitation/create", "params": {"message": "Name?"}}},
    }
    assert input_required({"roots": input_request("roots/list")}, "s")["requestState"] == "s"
    assert input_request("roots/list") == {"method": "roots/list", "params": {}}


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, None),
        ({"inputResponses": {"a": {"action": "accept"}}, "requestState": "s"}, None),
        ({"inputResponses": []}, "inputResponses must be an object"),
        (
            {"inputResponses": {"b": 1, "a": "x"}},
            "inputResponses entries must be result objects: a, b",
        ),
        ({"requestState": None}, "requestState must be a string"),
    ],
)
def test_retry_problems(params: dict[str, object], problem: str | None) -> None:
    assert retry_problem(params) == problem


def test_client_capabilities_decide_what_may_be_asked() -> None:
    assert client_can("sampling/createMessage", {"sampling": {}})
    assert not client_can("sampling/createMessage", {"elicitation": {}})
    assert client_can("roots/list", {"roots": {"listChanged": True}})
    assert not client_can("tools/call", {"sampling": {}})  # not a client method at all


def test_sealed_state_round_trips_and_refuses_tampering() -> None:
    signer = StateSigner()
    state = signer.sign({"kind": "k", "round": 2})
    assert signer.verify(state) == {"kind": "k", "round": 2}
    assert StateSigner().verify(state) is None  # another server's key
    sealed = json.loads(state)
    forged = json.dumps({"data": sealed["data"].replace("2", "3"), "mac": sealed["mac"]})
    assert signer.verify(forged) is None
    assert StateSigner(b"k").sign({"a": 1}) == StateSigner(b"k").sign({"a": 1})


@pytest.mark.parametrize(
    "state",
    [
        None,
        5,
        "not json",
        "[]",
        json.dumps({"data": "x"}),
        json.dumps({"data": 1, "mac": "m"}),
    ],
)
def test_malformed_state_is_refused(state: object) -> None:
    assert StateSigner().verify(state) is None


def test_a_sealed_non_object_is_refused() -> None:
    signer = StateSigner(b"key")
    data = "[1]"
    mac = signer._mac(data)
    assert signer.verify(json.dumps({"data": data, "mac": mac})) is None


# --- tasks (SEP-2663) -------------------------------------------------------------------------


def counter() -> Callable[[], str]:
    ids = iter(["t1", "t1", "t2", "t3", "t4"])
    return lambda: next(ids)


def test_task_lifecycle_and_shapes() -> None:
    store = TaskStore(ttl_ms=60_000, poll_ms=100, new_id=counter())
    task = store.create(1_700_000_000.0)
    assert len(store) == 1
    assert task.envelope() == {
        "taskId": "t1",
        "status": "working",
        "createdAt": "2023-11-14T22:13:20.000Z",
        "lastUpdatedAt": "2023-11-14T22:13:20.000Z",
        "ttlMs": 60_000,
        "pollIntervalMs": 100,
    }
    assert task.detailed() == task.envelope()  # working: nothing inlined
    assert store.create(1_700_000_000.0).task_id == "t2"  # a repeated id is drawn again
    assert store.complete("t1", {"content": []}, 1_700_000_001.5)
    got = store.get("t1", 1_700_000_002.0)
    assert got is not None and got.terminal
    assert got.detailed()["result"] == {"content": []}
    assert got.detailed()["lastUpdatedAt"] == "2023-11-14T22:13:21.500Z"
    assert not store.complete("t1", {"content": ["again"]}, 1_700_000_003.0)
    assert not store.cancel("t1", 1_700_000_003.0)  # terminal: nothing to stop
    assert not store.fail("nope", -1, "x", 0.0)


def test_failed_tasks_inline_the_error() -> None:
    store = TaskStore(new_id=counter())
    store.create(0.0)
    assert store.fail("t1", -32603, "broke", 1.0, {"why": "x"})
    assert store.get("t1", 1.0).detailed()["error"] == {  # type: ignore[union-attr]
        "code": -32603,
        "message": "broke",
        "data": {"why": "x"},
    }
    store.create(1.0)
    store.fail("t2", -32603, "broke", 1.0)
    assert "data" not in store.get("t2", 1.0).detailed()["error"]  # type: ignore[union-attr]


def test_input_is_taken_key_by_key() -> None:
    store = TaskStore(new_id=counter())
    store.create(0.0)
    asks = {"a": input_request("elicitation/create"), "b": input_request("roots/list")}
    assert not store.need_input("t1", {}, 1.0)
    assert not store.need_input("nope", asks, 1.0)
    assert store.answer("t1", {"a": {}}, 1.0) == {}  # not waiting for anything yet
    assert store.need_input("t1", asks, 1.0)
    task = store.get("t1", 1.0)
    assert task is not None and task.detailed()["inputRequests"] == asks
    assert store.answer("t1", {"zzz": {}, "a": 5}, 2.0) == {}  # unknown keys, non-objects
    assert store.answer("t1", {"a": {"action": "accept"}}, 2.0) == {"a": {"action": "accept"}}
    assert task.status == "input_required"
    assert list(task.detailed()["inputRequests"]) == ["b"]
    assert store.answer("t1", {"b": {"roots": []}}, 3.0) == {"b": {"roots": []}}
    assert task.status == "working"
    store.need_input("t1", asks, 4.0)
    assert store.cancel("t1", 5.0)
    assert task.status == "cancelled" and "inputRequests" not in task.detailed()


def test_tasks_expire_after_their_ttl_since_the_last_change() -> None:
    store = TaskStore(ttl_ms=1_000, new_id=counter())
    store.create(0.0)
    store.complete("t1", {}, 0.5)
    assert store.get("t1", 1.5) is not None  # 1 s after its last change: still there
    assert store.get("t1", 1.6) is None
    assert len(store) == 0


def test_negotiation() -> None:
    assert negotiated({"extensions": {TASKS_EXTENSION: {}}})
    assert not negotiated({"extensions": {}})
    assert not negotiated({"extensions": [TASKS_EXTENSION]})
    assert not negotiated({})
