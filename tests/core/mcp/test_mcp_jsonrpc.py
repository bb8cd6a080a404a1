"""JSON-RPC as MCP uses it: exact refusal codes and ids, encode/parse round trips, and the
revision table (version negotiation)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diaproto.mcp.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    JsonRpcError,
    JsonRpcErrorResponse,
    JsonRpcNotification,
    JsonRpcRequest,
    JsonRpcResponse,
    Message,
    encode_message,
    is_finite_number,
    parse_message,
)
from diaproto.mcp.protocol import (
    HANDSHAKE_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    SUPPORTED_VERSIONS,
    negotiate_version,
)


def refusal(payload: bytes | str) -> JsonRpcError:
    with pytest.raises(JsonRpcError) as info:
        parse_message(payload)
    return info.value


# --- parsing valid messages ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"jsonrpc":"2.0","id":1,"method":"ping"}', JsonRpcRequest(1, "ping")),
        ('{"jsonrpc":"2.0","id":"a","method":"m","params":{}}', JsonRpcRequest("a", "m", {})),
        ('{"jsonrpc":"2.0","id":0,"method":"m","params":null}', JsonRpcRequest(0, "m")),
        ('{"jsonrpc":"2.0","id":-7,"method":"m"}', JsonRpcRequest(-7, "m")),
        ('{"jsonrpc":"2.0","method":"n"}', JsonRpcNotification("n")),
        ('{"jsonrpc":"2.0","method":"n","params":{"a":1}}', JsonRpcNotification("n", {"a": 1})),
        ('{"jsonrpc":"2.0","id":3,"result":{}}', JsonRpcResponse(3, {})),
        ('{"jsonrpc":"2.0","id":"x","result":null}', JsonRpcResponse("x", None)),
        (
            '{"jsonrpc":"2.0","id":4,"error":{"code":-1,"message":"m","data":[1]}}',
            JsonRpcErrorResponse(4, -1, "m", [1]),
        ),
        # An error about a message whose id could not be read has a null id.
        (
            '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"p"}}',
            JsonRpcErrorResponse(None, -32700, "p"),
        ),
        ('{"jsonrpc":"2.0","id":"é😀","method":"m"}'.encode(), JsonRpcRequest("é😀", "m")),
        # A surrogate pair written as escapes is one valid character.
        (b'{"jsonrpc":"2.0","id":"\\ud83d\\ude00","method":"m"}', JsonRpcRequest("😀", "m")),
        # An escaped backslash before "ud800" is text, not a surrogate.
        (b'{"jsonrpc":"2.0","id":"\\\\ud800","method":"m"}', JsonRpcRequest("\\ud800", "m")),
    ],
)
def test_valid_messages(payload: bytes | str, message: Message) -> None:
    assert parse_message(payload) == message


# --- refusals: code and id -----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b"not json",
        b'{"jsonrpc":"2.0","id":1,"method":"m"} x',
        b'{"jsonrpc":"2.0","id":NaN,"method":"m"}',
        b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":Infinity}}',
        b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":-Infinity}}',
        b'{"jsonrpc":"2.0","id":"\xff","method":"m"}',  # invalid UTF-8
        b'{"jsonrpc":"2.0","id":"\xed\xa0\x80","method":"m"}',  # an encoded surrogate
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"m"}',  # a lone high surrogate escape
        b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"k":["\\udc00"]}}',  # lone low
        '{"jsonrpc":"2.0","id":1,"method":"\ud800"}',  # a str holding a lone surrogate
        b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"m"}',  # a byte order mark
        b"[" * 100_000,  # deeper than the decoder recurses
    ],
)
def test_parse_error(payload: bytes | str) -> None:
    error = refusal(payload)
    assert error.code == PARSE_ERROR
    assert error.request_id is None
    assert error.as_response() == JsonRpcErrorResponse(None, PARSE_ERROR, error.message)


@pytest.mark.parametrize(
    ("payload", "request_id"),
    [
        ("[]", None),  # batches were removed in 2025-06-18
        ('[{"jsonrpc":"2.0","id":1,"method":"ping"}]', None),
        ("1", None),
        ('"text"', None),
        ("null", None),
        ('{"id":1,"method":"m"}', 1),  # no "jsonrpc": the id is still readable
        ('{"jsonrpc":"1.0","id":"a","method":"m"}', "a"),
        ('{"jsonrpc":2.0,"id":1,"method":"m"}', 1),
        ('{"jsonrpc":"2.0","id":1,"method":""}', 1),
        ('{"jsonrpc":"2.0","id":1,"method":5}', 1),
        ('{"jsonrpc":"2.0","id":null,"method":"m"}', None),  # MCP ids are never null
        ('{"jsonrpc":"2.0","id":true,"method":"m"}', None),
        ('{"jsonrpc":"2.0","id":1.5,"method":"m"}', None),
        ('{"jsonrpc":"2.0","id":1.0,"method":"m"}', None),
        ('{"jsonrpc":"2.0","id":[1],"method":"m"}', None),
        ('{"jsonrpc":"2.0","id":1}', None),  # neither method, result nor error
        ('{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}', None),
        ('{"jsonrpc":"2.0","result":{}}', None),  # a result needs an id
        ('{"jsonrpc":"2.0","id":false,"result":{}}', None),
        ('{"jsonrpc":"2.0","id":1,"error":"bad"}', None),
        ('{"jsonrpc":"2.0","id":1,"error":{"code":"1","message":"m"}}', None),
        ('{"jsonrpc":"2.0","id":1,"error":{"code":true,"message":"m"}}', None),
        ('{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}', None),
        ('{"jsonrpc":"2.0","id":1,"error":{"code":1}}', None),
        ('{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":2}}', None),
    ],
)
def test_invalid_request(payload: str, request_id: str | int | None) -> None:
    error = refusal(payload)
    assert error.code == INVALID_REQUEST
    assert error.request_id == request_id
    assert error.as_response().id == request_id


@pytest.mark.parametrize(
    ("payload", "request_id"),
    [
        ('{"jsonrpc":"2.0","id":7,"method":"m","params":[1,2]}', 7),
        ('{"jsonrpc":"2.0","id":"q","method":"m","params":"x"}', "q"),
        ('{"jsonrpc":"2.0","id":0,"method":"m","params":0}', 0),
        ('{"jsonrpc":"2.0","method":"n","params":[]}', None),  # a notification: no id
    ],
)
def test_invalid_params(payload: str, request_id: str | int | None) -> None:
    error = refusal(payload)
    assert error.code == INVALID_PARAMS
    assert error.request_id == request_id


def test_error_carries_data() -> None:
    error = JsonRpcError(-1, "m", 5, {"k": 1})
    assert str(error) == "m"
    assert error.as_response() == JsonRpcErrorResponse(5, -1, "m", {"k": 1})


# --- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "body"),
    [
        (JsonRpcRequest(1, "ping"), {"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        (
            JsonRpcRequest("a", "m", {"x": 1}),
            {"jsonrpc": "2.0", "id": "a", "method": "m", "params": {"x": 1}},
        ),
        (JsonRpcNotification("n"), {"jsonrpc": "2.0", "method": "n"}),
        (
            JsonRpcNotification("n", {}),
            {"jsonrpc": "2.0", "method": "n", "params": {}},
        ),
        (JsonRpcResponse(2, {"a": []}), {"jsonrpc": "2.0", "id": 2, "result": {"a": []}}),
        (
            JsonRpcErrorResponse(None, -32700, "p"),
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "p"}},
        ),
        (
            JsonRpcErrorResponse(3, -1, "m", {"d": 1}),
            {"jsonrpc": "2.0", "id": 3, "error": {"code": -1, "message": "m", "data": {"d": 1}}},
        ),
    ],
)
def test_encoding(message: Message, body: dict[str, Any]) -> None:
    text = encode_message(message)
    assert json.loads(text) == body
    assert " " not in text  # compact


def test_encoding_keeps_unicode_and_refuses_nan() -> None:
    assert "é" in encode_message(JsonRpcNotification("n", {"t": "é"}))
    with pytest.raises(ValueError, match="JSON"):
        encode_message(JsonRpcNotification("n", {"x": math.nan}))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)
IDS = st.integers(-(2**53), 2**53) | st.text(max_size=10)
PARAMS = st.none() | st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3)
METHODS = st.text(min_size=1, max_size=12)
MESSAGES: st.SearchStrategy[Message] = st.one_of(
    st.builds(JsonRpcRequest, IDS, METHODS, PARAMS),
    st.builds(JsonRpcNotification, METHODS, PARAMS),
    st.builds(JsonRpcResponse, IDS, JSON_VALUES),
    st.builds(
        JsonRpcErrorResponse,
        st.none() | IDS,
        st.integers(-(2**31), 2**31),
        st.text(max_size=10),
        st.none() | JSON_VALUES,
    ),
)


@settings(max_examples=300)
@given(MESSAGES)
def test_round_trip(message: Message) -> None:
    text = encode_message(message)
    assert parse_message(text) == message
    assert parse_message(text.encode()) == message


@settings(max_examples=300)
@given(st.text(max_size=64) | st.binary(max_size=64))
def test_arbitrary_payloads_raise_only_jsonrpc_errors(payload: str | bytes) -> None:
    try:
        message = parse_message(payload)
    except JsonRpcError as error:
        assert error.code in (PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS)
    else:
        # Whatever parses can be quoted back to the peer, as UTF-8.
        encode_message(message).encode("utf-8")


@settings(max_examples=300)
@given(JSON_VALUES | st.dictionaries(st.sampled_from(["jsonrpc", "id", "method"]), JSON_VALUES))
def test_arbitrary_json_raises_only_jsonrpc_errors(value: object) -> None:
    document: object = {"jsonrpc": "2.0", **value} if isinstance(value, dict) else value
    try:
        message = parse_message(json.dumps(document))
    except JsonRpcError as error:
        assert error.code in (INVALID_REQUEST, INVALID_PARAMS)
    else:
        assert json.loads(encode_message(message))["jsonrpc"] == "2.0"


@pytest.mark.parametrize(
    ("value", "finite"),
    [(1, True), (0.5, True), (-3, True), (True, False), (math.nan, False), (math.inf, False)],
)
def test_is_finite_number(value: object, finite: bool) -> None:
    assert is_finite_number(value) is finite
    assert not is_finite_number("1")


# --- revisions -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_handshake_versions_are_echoed(version: str) -> None:
    assert negotiate_version(version) == version


@pytest.mark.parametrize("requested", ["2026-07-28", "1999-01-01", "", 5, None])
def test_other_versions_get_the_latest_handshake(requested: object) -> None:
    assert negotiate_version(requested) == LATEST_HANDSHAKE_VERSION == "2025-11-25"


def test_version_table() -> None:
    assert SUPPORTED_VERSIONS[0] == "2026-07-28"
    assert set(HANDSHAKE_VERSIONS) < set(SUPPORTED_VERSIONS)
