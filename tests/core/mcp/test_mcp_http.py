"""The HTTP rules every MCP transport shares (Host 421, Origin 403, bearer 401, 413, 415, 406)
and the 2026-07-28 validation ladder (-32602, -32020, -32022, in that order)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diaproto.errors import LocalProtocolError
from diaproto.events import Headers
from diaproto.mcp.http import (
    STATUS_OF_CODE,
    HttpRefusal,
    McpHttpConfig,
    accepts,
    base_url,
    check_access,
    check_post,
    check_stream,
    host_name,
    peer_host,
    session_header,
)
from diaproto.mcp.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    JsonRpcRequest,
)
from diaproto.mcp.protocol import META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION
from diaproto.mcp.stateless import (
    check_request,
    decode_header_value,
    is_modern,
    unsupported_version,
)

DEFAULT = McpHttpConfig()
LOCAL: Headers = (("host", "127.0.0.1:8000"),)


def status(refusal: HttpRefusal | None) -> int | None:
    return None if refusal is None else refusal.status


# --- Host ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authority", "name"),
    [
        ("example.com:8080", "example.com"),
        ("Example.COM", "example.com"),
        (" localhost ", "localhost"),
        ("[::1]:80", "[::1]"),
        ("[::1]", "[::1]"),
        ("[::1", "[::1"),  # unclosed: kept whole, so it matches nothing
        ("::1", "::1"),  # unbracketed IPv6: not a host name we serve
        ("localhost:", "localhost"),
    ],
)
def test_host_name(authority: str, name: str) -> None:
    assert host_name(authority) == name


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]", "[::1]:8080"],
)
def test_loopback_hosts_pass(host: str) -> None:
    assert check_access((("Host", host),), DEFAULT) is None


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("host", "evil.example"),),
        (("host", "evil.example:8000"),),
        (("host", "127.0.0.2"),),
        (("host", "[::2]:80"),),
        (("host", "::1"),),
        (("host", "localhost.evil.example"),),
        (("host", "127.0.0.1"), ("host", "127.0.0.1")),  # duplicated
        (("host", "127.0.0.1"), ("host", "evil.example")),
    ],
)
def test_other_hosts_are_misdirected(headers: Headers) -> None:
    refusal = check_access(headers, DEFAULT)
    assert refusal is not None
    assert refusal.status == 421
    assert "Host" in refusal.message


def test_allowed_hosts_are_configurable() -> None:
    config = McpHttpConfig(allowed_hosts=("mcp.example",))
    assert check_access((("host", "mcp.example:443"),), config) is None
    assert status(check_access(LOCAL, config)) == 421


# --- Origin --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1",
        "http://localhost:3000",
        "https://localhost",
        "http://[::1]:5173",
        "HTTP://LOCALHOST:3000",
    ],
)
def test_loopback_origins_pass(origin: str) -> None:
    assert check_access((*LOCAL, ("origin", origin)), DEFAULT) is None


@pytest.mark.parametrize(
    "origin",
    [
        "null",  # opaque origin (a sandboxed frame, a file: page)
        "http://evil.example",
        "https://evil.example:443",
        "http://localhost.evil.example",
        "file://localhost",
        "ws://localhost",
        "http://localhost/path",
        "http://",
        "",
        "http://[::1",  # an unclosed IPv6 bracket: urlsplit raises on it
        "http://user@localhost",
    ],
)
def test_other_origins_are_forbidden(origin: str) -> None:
    refusal = check_access((*LOCAL, ("origin", origin)), DEFAULT)
    assert refusal is not None
    assert refusal.status == 403


def test_allowlisted_origins_are_exact() -> None:
    config = McpHttpConfig(allowed_origins=("https://app.example",))
    assert check_access((*LOCAL, ("origin", "https://app.example")), config) is None
    for origin in ("https://app.example:8443", "http://app.example", "https://app.example/"):
        assert status(check_access((*LOCAL, ("origin", origin)), config)) == 403


def test_the_host_check_comes_first() -> None:
    headers = (("host", "evil.example"), ("origin", "null"))
    assert status(check_access(headers, McpHttpConfig(bearer_token="t"))) == 421
    assert status(check_access((*LOCAL, ("origin", "null")), McpHttpConfig(bearer_token="t"))) == (
        403
    )


# --- bearer token --------------------------------------------------------------------------

TOKENED = McpHttpConfig(bearer_token="s3cret")


@pytest.mark.parametrize(
    "authorization", ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret ", "Bearer s3cret\t"]
)
def test_the_right_token_passes(authorization: str) -> None:
    assert check_access((*LOCAL, ("authorization", authorization)), TOKENED) is None


@pytest.mark.parametrize(
    "headers",
    [
        LOCAL,
        (*LOCAL, ("authorization", "")),
        (*LOCAL, ("authorization", "Bearer")),
        (*LOCAL, ("authorization", "Bearer wrong")),
        (*LOCAL, ("authorization", "Bearer s3cre")),
        (*LOCAL, ("authorization", "Bearer s3cretx")),
        (*LOCAL, ("authorization", "Basic s3cret")),
        (*LOCAL, ("authorization", "s3cret")),
        (*LOCAL, ("authorization", "Bearer é")),
    ],
)
def test_a_missing_or_wrong_token_is_unauthorized(headers: Headers) -> None:
    refusal = check_access(headers, TOKENED)
    assert refusal is not None
    assert refusal.status == 401
    assert ("www-authenticate", 'Bearer realm="diaproto", error="invalid_token"') in (
        refusal.response_headers()
    )


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr("diaproto.mcp.http.hmac.compare_digest", compare_digest)
    assert check_access((*LOCAL, ("authorization", "Bearer nope")), TOKENED) is not None
    assert compared == [(b"nope", b"s3cret")]


def test_no_token_configured_ignores_authorization() -> None:
    assert check_access((*LOCAL, ("authorization", "Bearer anything")), DEFAULT) is None


# --- POST body, media types ----------------------------------------------------------------

POST: Headers = (
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
)


def test_a_good_post_passes() -> None:
    assert check_post(POST, b"{}", DEFAULT) is None


def test_the_body_limit() -> None:
    config = McpHttpConfig(max_body_bytes=4)
    assert check_post(POST, b"1234", config) is None
    assert status(check_post(POST, b"12345", config)) == 413


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json;charset=UTF-8",
        " application/json ",
    ],
)
def test_content_type_parameters_are_accepted(content_type: str) -> None:
    headers = (("content-type", content_type), POST[1])
    assert check_post(headers, b"{}", DEFAULT) is None


@pytest.mark.parametrize(
    "headers",
    [
        (POST[1],),
        (("content-type", "text/plain"), POST[1]),
        (("content-type", "application/json-patch+json"), POST[1]),
        (("content-type", "application/jsonx"), POST[1]),
    ],
)
def test_other_content_types_are_unsupported(headers: Headers) -> None:
    assert status(check_post(headers, b"{}", DEFAULT)) == 415


@pytest.mark.parametrize(
    "accept",
    [
        ("application/json, text/event-stream",),
        ("*/*",),
        ("application/*, text/*",),
        ("application/json;q=0.9", "text/event-stream"),  # two headers
        ("TEXT/EVENT-STREAM; q=1, Application/Json",),
    ],
)
def test_accept_with_both_or_wildcards(accept: tuple[str, ...]) -> None:
    headers = (POST[0], *(("accept", value) for value in accept))
    assert check_post(headers, b"{}", DEFAULT) is None


@pytest.mark.parametrize(
    "accept",
    [
        (),
        ("application/json",),
        ("text/event-stream",),
        ("text/*",),
        ("application/jsonx, text/*",),
    ],
)
def test_accept_without_both_is_not_acceptable(accept: tuple[str, ...]) -> None:
    headers = (POST[0], *(("accept", value) for value in accept))
    assert status(check_post(headers, b"{}", DEFAULT)) == 406


def test_size_is_checked_before_media_types() -> None:
    assert status(check_post((), b"x" * 10, McpHttpConfig(max_body_bytes=1))) == 413
    assert status(check_post((), b"{}", DEFAULT)) == 415


@pytest.mark.parametrize(
    ("accept", "expected"),
    [("text/event-stream", None), ("*/*", None), ("text/*", None), ("application/json", 406)],
)
def test_check_stream(accept: str, expected: int | None) -> None:
    assert status(check_stream((("accept", accept),))) == expected
    assert status(check_stream(())) == 406


def test_accepts() -> None:
    assert accepts((("Accept", "application/json"),), "application/json")
    assert not accepts((("accept", "application/xml"),), "application/json")


def test_refusal_body_and_headers() -> None:
    refusal = HttpRefusal(406, "no", headers=(("x", "y"),))
    assert json.loads(refusal.body()) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": INVALID_REQUEST, "message": "no"},
    }
    assert refusal.response_headers() == (
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("x", "y"),
    )


def test_status_of_codes() -> None:
    assert STATUS_OF_CODE[METHOD_NOT_FOUND] == 404
    assert {STATUS_OF_CODE[c] for c in (INVALID_PARAMS, HEADER_MISMATCH)} == {400}
    assert STATUS_OF_CODE[UNSUPPORTED_PROTOCOL_VERSION] == 400


HEADER_NAMES = st.sampled_from(
    ["host", "Host", "origin", "authorization", "content-type", "accept", "x-other"]
)
HEADER_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["127.0.0.1", "[::1]:1", "[", "http://[", "null", "Bearer s3cret", "*/*", "http://[::1"]
    ),
)
HEADERS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6).map(tuple)


@settings(max_examples=300)
@given(HEADERS, st.binary(max_size=8))
def test_arbitrary_headers_get_an_answer_not_an_exception(headers: Headers, body: bytes) -> None:
    config = McpHttpConfig(bearer_token="s3cret", max_body_bytes=4)
    for refusal in (check_access(headers, config), check_post(headers, body, config)):
        if refusal is not None:
            assert refusal.status in (401, 403, 406, 413, 415, 421)
            assert json.loads(refusal.body())["id"] is None
    check_stream(headers)


# --- sessions, peers, links (issue 12) ----------------------------------------------------


def test_session_header() -> None:
    assert session_header(()) == (None, None)
    assert session_header((("Mcp-Session-Id", "abc"),)) == ("abc", None)
    session_id, refusal = session_header((("mcp-session-id", "a"), ("mcp-session-id", "b")))
    assert session_id is None and refusal is not None
    assert refusal.status == 400 and "more than once" in refusal.message


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("127.0.0.1:5000", "127.0.0.1"),
        ("::1:5000", "::1"),
        ("10.0.0.1", "10.0.0.1"),
        ("/run/sock", "/run/sock"),
        ("host:port", "host:port"),
    ],
)
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host


@pytest.mark.parametrize(
    ("headers", "base"),
    [
        ((("host", "127.0.0.1:8000"),), "http://127.0.0.1:8000"),
        ((("host", "localhost"),), "http://localhost"),
        ((("host", "[::1]:80"),), "http://[::1]:80"),
        ((("host", "127.0.0.1:8000/evil"),), ""),  # passes the allowlist; not a plain authority
        ((("host", "a"), ("host", "b")), ""),
        ((), ""),
    ],
)
def test_base_url_from_host(headers: Headers, base: str) -> None:
    assert base_url(headers, DEFAULT) == base


def test_base_url_configured() -> None:
    config = McpHttpConfig(public_base_url="https://tts.example/")
    assert base_url(LOCAL, config) == "https://tts.example"


@pytest.mark.parametrize(
    "bad",
    [
        {"max_sessions": 0},
        {"max_sessions_per_peer": 0},
        {"session_retry_after": 0},
        {"max_inline_audio_bytes": -1},
    ],
)
def test_session_and_result_bounds_are_checked(bad: dict[str, int]) -> None:
    with pytest.raises(LocalProtocolError):
        McpHttpConfig(**bad)  # type: ignore[arg-type]


# --- 2026-07-28: the validation ladder -----------------------------------------------------

MODERN = "2026-07-28"


def meta(version: object = MODERN, capabilities: object = None) -> dict[str, Any]:
    return {
        META_PROTOCOL_VERSION: version,
        META_CLIENT_CAPABILITIES: {} if capabilities is None else capabilities,
    }


def modern_request(
    method: str = "tools/call", params: dict[str, Any] | None = None, request_id: int = 1
) -> JsonRpcRequest:
    if params is None:
        params = {"name": "speak", "arguments": {}, "_meta": meta()}
    return JsonRpcRequest(request_id, method, params)


def routing(
    version: str | None = MODERN, method: str | None = "tools/call", name: str | None = "speak"
) -> Headers:
    headers: list[tuple[str, str]] = []
    for key, value in (("mcp-protocol-version", version), ("mcp-method", method)):
        if value is not None:
            headers.append((key, value))
    if name is not None:
        headers.append(("mcp-name", name))
    return tuple(headers)


def code(request: JsonRpcRequest, headers: Headers) -> int | None:
    error = check_request(request, headers)
    if error is None:
        return None
    assert error.request_id == request.id
    return error.code


@pytest.mark.parametrize(
    ("headers", "modern"),
    [
        ((("mcp-protocol-version", MODERN),), True),
        ((("MCP-Protocol-Version", " 2027-01-01 "),), True),  # unknown: the modern path says so
        ((("mcp-protocol-version", "2025-11-25"),), False),
        ((("mcp-protocol-version", " 2025-03-26"),), False),
        ((), False),
    ],
)
def test_is_modern(headers: Headers, modern: bool) -> None:
    assert is_modern(headers) is modern


def test_a_good_request_passes() -> None:
    assert code(modern_request(), routing()) is None
    assert code(modern_request(), (*routing(version=f" {MODERN} "),)) is None


def test_a_method_without_a_name() -> None:
    request = modern_request("tools/list", {"_meta": meta()})
    assert code(request, routing(method="tools/list", name=None)) is None


@pytest.mark.parametrize("params", [{}, {"_meta": "x"}, {"_meta": None}])
def test_rung_1_the_envelope_is_required(params: dict[str, Any]) -> None:
    assert code(modern_request("tools/list", params), routing(method="tools/list")) == (
        INVALID_PARAMS
    )
    assert code(JsonRpcRequest(1, "tools/list"), routing(method="tools/list")) == INVALID_PARAMS


@pytest.mark.parametrize("missing", [META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES])
def test_rung_1_both_envelope_keys(missing: str) -> None:
    envelope = meta()
    del envelope[missing]
    error = check_request(modern_request("tools/list", {"_meta": envelope}), routing())
    assert error is not None
    assert (error.code, missing in error.message) == (INVALID_PARAMS, True)


@pytest.mark.parametrize(
    "headers",
    [
        routing(version=None),
        routing(version="2025-11-25"),
        routing(method=None),
        routing(method="tools/list"),
        routing(name=None),
        routing(name="other"),
        routing(name="=?base64?c3BlYWs?="),  # not valid base64 (unpadded)
        (*routing(), ("mcp-method", "tools/call")),  # a routing header twice
        (*routing(), ("mcp-name", "speak")),
        (("mcp-protocol-version", MODERN), *routing()),
    ],
)
def test_rung_2_headers_mirror_the_body(headers: Headers) -> None:
    assert code(modern_request(), headers) == HEADER_MISMATCH


def test_rung_2_before_rung_3() -> None:
    # A version we do not serve, named in both places and mismatching the method: -32020.
    request = modern_request(params={"name": "speak", "_meta": meta("2027-01-01")})
    assert code(request, routing("2027-01-01", method="tools/list")) == HEADER_MISMATCH
    # A non-string version can never match the header: -32020 as well.
    request = modern_request(params={"name": "speak", "_meta": meta(5)})
    assert code(request, routing("5")) == HEADER_MISMATCH


def test_duplicated_headers_come_first() -> None:
    request = JsonRpcRequest(1, "tools/call", {})  # would fail rung 1
    assert code(request, (*routing(), ("mcp-protocol-version", MODERN))) == HEADER_MISMATCH


def test_rung_3_unsupported_version_data() -> None:
    request = modern_request(params={"name": "speak", "_meta": meta("2027-01-01")})
    error = check_request(request, routing("2027-01-01"))
    assert error is not None
    assert error.code == UNSUPPORTED_PROTOCOL_VERSION
    assert error.data == {"supported": [MODERN], "requested": "2027-01-01"}
    assert STATUS_OF_CODE[error.code] == 400


def test_capabilities_must_be_an_object() -> None:
    request = modern_request(params={"name": "speak", "_meta": meta(capabilities=[])})
    assert code(request, routing()) == INVALID_PARAMS


@pytest.mark.parametrize(
    ("method", "param", "value"),
    [("prompts/get", "name", "greet"), ("resources/read", "uri", "file:///a b")],
)
def test_name_header_for_prompts_and_resources(method: str, param: str, value: str) -> None:
    request = modern_request(method, {param: value, "_meta": meta()})
    assert code(request, routing(method=method, name=value)) is None
    assert code(request, routing(method=method, name="x")) == HEADER_MISMATCH


def test_a_name_header_in_base64() -> None:
    name = "говорить"
    encoded = base64.b64encode(name.encode()).decode()
    request = modern_request(params={"name": name, "_meta": meta()})
    assert code(request, routing(name=f"=?base64?{encoded}?=")) is None


def test_a_request_without_the_named_param_needs_no_name_header() -> None:
    request = modern_request(params={"_meta": meta()})
    assert code(request, routing(name=None)) is None


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        (None, None),
        ("plain", "plain"),
        ("=?base64?aGk=?=", "hi"),
        ("=?base64?0JY=?=", "Ж"),
        ("=?base64??=", ""),
        ("=?base64?!!?=", None),  # not base64
        ("=?base64?/w==?=", None),  # base64 of a byte that is not UTF-8
        ("=?base64?é?=", None),  # non-ASCII inside: b64decode raises a plain ValueError
        ("=?BASE64?aGk=?=", "=?BASE64?aGk=?="),  # the marker is case sensitive
    ],
)
def test_decode_header_value(value: str | None, decoded: str | None) -> None:
    assert decode_header_value(value) == decoded


def test_unsupported_version_for_a_notification() -> None:
    error = unsupported_version("1999-01-01")
    assert (error.code, error.request_id) == (UNSUPPORTED_PROTOCOL_VERSION, None)
    assert error.data["requested"] == "1999-01-01"
    assert "2025-11-25" in error.data["supported"]
    assert MODERN in error.data["supported"]


@pytest.mark.parametrize(
    "method",
    ["ping", "initialize", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"],
)
def test_methods_removed_at_2026_07_28_are_not_found(method: str) -> None:
    """Issue 12: the lifecycle, logging and subscribe methods do not exist at 2026-07-28
    (404 with -32601 naming the method, as the SDK's server answers), whatever their params."""
    for params in ({"_meta": meta()}, {"level": "debug", "_meta": meta()}):
        request = modern_request(method, params)
        error = check_request(request, routing(method=method, name=None))
        assert error is not None and error.code == METHOD_NOT_FOUND
        assert error.data == method and STATUS_OF_CODE[error.code] == 404
    # The ladder still comes first: a broken envelope is -32602, not "not found".
    assert code(modern_request(method, {}), routing(method=method, name=None)) == INVALID_PARAMS


def test_an_unknown_version_without_the_envelope_says_why() -> None:
    """A handshake-era body at an unknown version: -32602 (the SDK's ladder), and the
    message names the version and what is served, so the client can tell what went wrong."""
    request = JsonRpcRequest(3, "tools/list", {})
    error = check_request(request, routing(version="1999-01-01", method="tools/list", name=None))
    assert error is not None and error.code == INVALID_PARAMS
    assert "1999-01-01" in error.message and "2025-11-25" in error.message
    # At 2026-07-28 itself the message is only about the envelope.
    error = check_request(request, routing(method="tools/list", name=None))
    assert error is not None and "1999-01-01" not in error.message


ROUTING_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from([MODERN, "2025-11-25", "tools/call", "speak", "=?base64?", "=?base64?é?="]),
)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["mcp-protocol-version", "mcp-method", "mcp-name"]), ROUTING_VALUES
        ),
        max_size=5,
    ),
    st.sampled_from(["tools/call", "tools/list", "resources/read", "prompts/get"]),
    st.dictionaries(
        st.sampled_from(["name", "uri", "_meta", "arguments"]),
        st.none() | st.text(max_size=5) | st.just(meta()) | st.integers(),
        max_size=4,
    ),
)
def test_the_ladder_answers_arbitrary_requests(
    headers: list[tuple[str, str]], method: str, params: dict[str, Any]
) -> None:
    error = check_request(JsonRpcRequest(1, method, params), tuple(headers))
    if error is not None:
        assert error.code in (INVALID_PARAMS, HEADER_MISMATCH, UNSUPPORTED_PROTOCOL_VERSION)
        assert STATUS_OF_CODE[error.code] == 400
