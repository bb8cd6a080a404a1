"""What an MCP server offers besides tools, as values: resources and URI templates, prompts,
the capabilities they declare; and SEP-2322's input-required helpers and sealed state."""

from __future__ import annotations

import json

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
