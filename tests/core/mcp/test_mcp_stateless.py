"""2026-07-28 header rules beyond the ladder of tests/core/mcp/test_mcp_http.py: -32021's HTTP
status, ``Mcp-Name`` on the task methods (SEP-2663), and the ``Mcp-Param-<Name>`` headers a tool's
``x-mcp-header`` arguments are mirrored in (SEP-2243)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diaproto.events import Headers
from diaproto.mcp.http import STATUS_OF_CODE
from diaproto.mcp.jsonrpc import (
    HEADER_MISMATCH,
    MISSING_CLIENT_CAPABILITY,
    JsonRpcError,
    JsonRpcRequest,
)
from diaproto.mcp.protocol import META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION
from diaproto.mcp.stateless import check_param_headers, check_request, param_headers

MODERN = "2026-07-28"
META = {META_PROTOCOL_VERSION: MODERN, META_CLIENT_CAPABILITIES: {}}

REGION_TOOL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "ratio": {"type": "number", "x-mcp-header": "Ratio"},
        "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
        "target": {
            "type": "object",
            "properties": {"zone": {"type": "string", "x-mcp-header": "Zone"}},
        },
        "plain": {"type": "string"},
    },
}
SCHEMAS: dict[str, Mapping[str, Any]] = {"deploy": REGION_TOOL, "bare": {"type": "object"}}


def b64(text: str) -> str:
    return f"=?base64?{base64.b64encode(text.encode()).decode()}?="


def call(
    arguments: dict[str, Any], params: dict[str, str], tool: str = "deploy"
) -> JsonRpcError | None:
    """A 2026-07-28 ``tools/call`` of ``tool`` with these ``Mcp-Param-*`` headers."""
    request = JsonRpcRequest(7, "tools/call", {"name": tool, "arguments": arguments, "_meta": META})
    headers: Headers = (
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
        *((f"Mcp-Param-{name}", value) for name, value in params.items()),
    )
    return check_request(request, headers, SCHEMAS.get)


def mismatch(error: JsonRpcError | None) -> str:
    assert error is not None, "served; a -32020 was wanted"
    assert (error.code, error.request_id, STATUS_OF_CODE[error.code]) == (HEADER_MISMATCH, 7, 400)
    return error.message


# --- -32021 ----------------------------------------------------------------------------------


def test_a_missing_client_capability_is_400() -> None:
    assert STATUS_OF_CODE[MISSING_CLIENT_CAPABILITY] == 400


# --- Mcp-Name on tasks/get, tasks/update, tasks/cancel ---------------------------------------


@pytest.mark.parametrize("method", ["tasks/get", "tasks/update", "tasks/cancel"])
def test_mcp_name_mirrors_the_task_id(method: str) -> None:
    request = JsonRpcRequest(3, method, {"taskId": "task-1", "_meta": META})

    def check(name: str | None) -> JsonRpcError | None:
        headers: Headers = (("mcp-protocol-version", MODERN), ("mcp-method", method))
        if name is not None:
            headers = (*headers, ("mcp-name", name))
        return check_request(request, headers)

    assert check("task-1") is None
    assert check(b64("task-1")) is None
    for wrong in ("task-2", None):
        error = check(wrong)
        assert error is not None and error.code == HEADER_MISMATCH
        assert "params.taskId" in error.message


def test_a_task_method_without_a_task_id_is_left_to_the_method() -> None:
    request = JsonRpcRequest(3, "tasks/get", {"_meta": META})
    headers: Headers = (("mcp-protocol-version", MODERN), ("mcp-method", "tasks/get"))
    assert check_request(request, headers) is None


# --- Mcp-Param-<Name> (SEP-2243) -------------------------------------------------------------


def test_the_declarations_of_a_schema() -> None:
    assert param_headers(REGION_TOOL) == [
        (("region",), "Region"),
        (("count",), "Count"),
        (("ratio",), "Ratio"),
        (("dry",), "Dry-Run"),
        (("target", "zone"), "Zone"),
    ]


@pytest.mark.parametrize(
    "prop",
    [
        {"type": "string", "x-mcp-header": "Bad Name"},  # not an HTTP token
        {"type": "string", "x-mcp-header": ""},
        {"type": "string", "x-mcp-header": 5},
        {"type": "object", "x-mcp-header": "Thing"},  # not a primitive
        {"type": "array", "x-mcp-header": "Thing"},
        {"x-mcp-header": "Thing"},  # no type
        "Thing",  # not a schema at all
    ],
)
def test_an_invalid_declaration_expects_no_header(prop: Any) -> None:
    assert param_headers({"properties": {"thing": prop}}) == []


def test_a_header_name_declared_twice_expects_no_header() -> None:
    schema = {
        "properties": {
            "a": {"type": "string", "x-mcp-header": "Region"},
            "b": {"type": "string", "x-mcp-header": "region"},
            "c": {"type": "string", "x-mcp-header": "Zone"},
        }
    }
    assert param_headers(schema) == [(("c",), "Zone")]


def test_only_properties_count() -> None:
    schema = {
        "properties": {"list": {"type": "array", "items": {"x-mcp-header": "X", "type": "string"}}},
        "anyOf": [{"properties": {"y": {"type": "string", "x-mcp-header": "Y"}}}],
    }
    assert param_headers(schema) == []


@pytest.mark.parametrize(
    ("arguments", "params"),
    [
        ({"region": "us-west1"}, {"Region": "us-west1"}),
        ({"region": "us-west1"}, {"Region": "  us-west1 "}),  # OWS is not the value
        ({"region": "Hello"}, {"Region": b64("Hello")}),
        ({"region": "日本"}, {"Region": b64("日本")}),
        ({"region": " padded "}, {"Region": b64(" padded ")}),
        ({"region": "SGVsbG8="}, {"Region": "SGVsbG8="}),  # no wrapper: literal
        ({"region": "=?base64?SGVsbG8="}, {"Region": "=?base64?SGVsbG8="}),  # no ?= suffix
        ({"count": 42}, {"Count": "42"}),
        ({"count": 42.0}, {"Count": "42"}),
        ({"count": -3}, {"Count": b64("-3")}),
        ({"ratio": 0.5}, {"Ratio": "0.5"}),
        ({"ratio": 1e21}, {"Ratio": "1e+21"}),
        ({"dry": True}, {"Dry-Run": "true"}),
        ({"dry": False}, {"Dry-Run": "false"}),
        ({"target": {"zone": "b"}}, {"Zone": "b"}),
        ({}, {}),  # absent: no header expected
        ({"region": None, "count": None}, {}),  # null: no header expected
        ({"region": None}, {"Region": "anything"}),  # nor judged when sent
        ({"plain": "x", "target": "not an object"}, {}),
    ],
)
def test_matching_param_headers_are_served(
    arguments: dict[str, Any], params: dict[str, str]
) -> None:
    assert call(arguments, params) is None


def test_header_names_are_case_insensitive() -> None:
    request = JsonRpcRequest(
        7, "tools/call", {"name": "deploy", "arguments": {"region": "eu"}, "_meta": META}
    )
    headers: Headers = (("mcp-param-region", "eu"),)
    assert check_param_headers(request.params or {}, headers, SCHEMAS.get) is None
    assert (
        check_param_headers(request.params or {}, (("MCP-PARAM-REGION", "eu"),), SCHEMAS.get)
        is None
    )


@pytest.mark.parametrize(
    "header",
    [
        "=?base64?SGVsbG8?=",  # bad padding (the suite's case)
        "=?base64?SGVs!!!bG8=?=",  # characters outside the alphabet (the suite's case)
        "=?base64?SGVsbG8=====?=",
        "=?base64?/w==?=",  # Base64, but not UTF-8
    ],
)
def test_an_invalid_encoded_value_is_refused(header: str) -> None:
    assert "not valid" in mismatch(call({"region": "Hello"}, {"Region": header}))


@pytest.mark.parametrize(
    ("arguments", "params"),
    [
        ({"region": "us-west1"}, {"Region": "eu-west1"}),
        ({"region": "Hello"}, {"Region": b64("Hullo")}),
        ({"region": "Hello"}, {"Region": "hello"}),  # values are case-sensitive
        ({"region": "Hello"}, {"Region": "SGVsbG8="}),  # no wrapper: not decoded
        ({"count": 42}, {"Count": "43"}),
        ({"count": 42}, {"Count": "42abc"}),
        ({"count": 42}, {"Count": "Infinity"}),
        ({"count": 1}, {"Count": "true"}),
        ({"dry": True}, {"Dry-Run": "1"}),
        ({"dry": False}, {"Dry-Run": "False"}),
        ({"target": {"zone": "a"}}, {"Zone": "b"}),
    ],
)
def test_a_value_that_differs_from_the_argument_is_refused(
    arguments: dict[str, Any], params: dict[str, str]
) -> None:
    assert "does not match arguments." in mismatch(call(arguments, params))


@pytest.mark.parametrize(
    ("arguments", "params", "missing"),
    [
        ({"region": "test-value"}, {}, "Mcp-Param-Region"),
        ({"region": "x", "count": 0}, {"Region": "x"}, "Mcp-Param-Count"),
        ({"dry": False}, {"Region": "x"}, "Mcp-Param-Dry-Run"),
        ({"target": {"zone": "a"}}, {}, "Mcp-Param-Zone"),
    ],
)
def test_a_missing_header_with_the_value_in_the_body_is_refused(
    arguments: dict[str, Any], params: dict[str, str], missing: str
) -> None:
    message = mismatch(call(arguments, params))
    assert missing in message and "missing" in message


def test_a_param_header_sent_twice_is_refused() -> None:
    request = JsonRpcRequest(
        7, "tools/call", {"name": "deploy", "arguments": {"region": "eu"}, "_meta": META}
    )
    headers: Headers = (
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/call"),
        ("mcp-name", "deploy"),
        ("mcp-param-region", "eu"),
        ("Mcp-Param-Region", "eu"),
    )
    assert "more than once" in mismatch(check_request(request, headers, SCHEMAS.get))


def test_without_a_schema_nothing_is_expected() -> None:
    # An unknown tool (the session answers it), a tool with no declarations, or no lookup.
    assert call({"region": "x"}, {}, tool="unknown") is None
    assert call({"region": "x"}, {"Region": "y"}, tool="bare") is None
    request = JsonRpcRequest(
        7, "tools/call", {"name": "deploy", "arguments": {"region": "x"}, "_meta": META}
    )
    headers: Headers = (
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/call"),
        ("mcp-name", "deploy"),
    )
    assert check_request(request, headers) is None
    assert check_request(request, headers, SCHEMAS.get) is not None


def test_param_headers_come_after_mcp_name() -> None:
    request = JsonRpcRequest(
        7, "tools/call", {"name": "deploy", "arguments": {"region": "x"}, "_meta": META}
    )
    headers: Headers = (
        ("mcp-protocol-version", MODERN),
        ("mcp-method", "tools/call"),
        ("mcp-name", "other"),
    )
    error = check_request(request, headers, SCHEMAS.get)
    assert error is not None and "Mcp-Name" in error.message


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(["region", "count", "ratio", "dry", "target", "plain"]),
        st.none()
        | st.text(max_size=6)
        | st.integers()
        | st.floats(allow_nan=True)
        | st.booleans()
        | st.just({"zone": "a"}),
        max_size=4,
    ),
    st.dictionaries(
        st.sampled_from(["Region", "Count", "Ratio", "Dry-Run", "Zone"]),
        st.text(max_size=8) | st.sampled_from(["=?base64?", "=?base64?é?=", "1e5", "-0"]),
        max_size=4,
    ),
)
def test_any_call_is_served_or_refused_with_32020(
    arguments: dict[str, Any], params: dict[str, str]
) -> None:
    error = call(arguments, params)
    assert error is None or mismatch(error)
