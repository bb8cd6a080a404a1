"""What the session says about itself, by revision: the ``initialize`` handshake and its
version negotiation, and at 2026-07-28 (no handshake) ``server/discover``, the server named
in every result and the caching hints."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_session_support import (
    call,
    error_code,
    events,
    initialize,
    modern,
    new_session,
    only,
    outbound,
    ready,
    send,
)

from diaproto.mcp.jsonrpc import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND
from diaproto.mcp.negotiation import CACHE_TTL_MS, ServerInfo
from diaproto.mcp.protocol import META_SERVER_INFO
from diaproto.mcp.session import SessionState

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


def test_initialized_before_initialize_changes_nothing() -> None:
    session = new_session()
    send(session, method="notifications/initialized")
    assert session.state is SessionState.NEW
    assert outbound(session) == []


# --- 2026-07-28: no handshake, every result says who answered ------------------------------


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
