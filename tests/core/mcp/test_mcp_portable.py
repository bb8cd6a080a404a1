"""An MCP session's portable part (diaproto/mcp/portable.py): what the handshake decided
survives a trip through JSON to another process, the restored session answers as the
original, and a damaged or foreign state is refused with the field it got wrong, never
another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp_session_support import INFO, SPEAK, VOICES, bodies, initialize, new_session, send

from diaproto.errors import LocalProtocolError
from diaproto.mcp.portable import restore_session, session_state
from diaproto.mcp.session import McpSession, SessionState


def handshaken() -> McpSession:
    session = new_session()
    initialize(session, capabilities={"sampling": {}, "experimental": {"x": {"y": 1}}})
    send(session, method="notifications/initialized")
    send(session, id=1, method="logging/setLevel", params={"level": "warning"})
    bodies(session)
    session.subscriptions.add("diaproto://voices")
    return session


def test_the_handshake_survives_a_trip_through_json() -> None:
    original = handshaken()
    state = json.loads(json.dumps(session_state(original)))
    restored = restore_session(state, INFO, (SPEAK, VOICES))
    assert restored.state is SessionState.READY
    assert session_state(restored) == session_state(original)
    assert restored.log_level == "warning"
    assert restored.client_info == {"name": "test", "version": "0"}
    # It answers as the original would.
    for session in (original, restored):
        send(session, id=7, method="tools/list")
        send(session, id=8, method="ping")
    assert bodies(restored) == bodies(original)


def test_a_session_with_nothing_decided_or_closed_has_nothing_to_move() -> None:
    with pytest.raises(LocalProtocolError, match="state new"):
        session_state(new_session())


def test_our_request_ids_go_on_where_the_other_process_left_them() -> None:
    original = handshaken()
    ask = {"messages": [], "maxTokens": 1}
    for _ in range(2):
        assert original.request("sampling/createMessage", ask) is not None
    assert original.last_question_id == 2
    restored = restore_session(session_state(original), INFO, (SPEAK, VOICES))
    assert restored.request("sampling/createMessage", ask) == 3
    [asked] = bodies(restored)
    assert asked["id"] == 3  # never an id the client has already seen in this session


@pytest.mark.parametrize("state", [[], None, "state"])
def test_a_state_that_is_no_mapping_is_refused(state: object) -> None:
    with pytest.raises(LocalProtocolError, match="mapping"):
        restore_session(state, INFO)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("v", 2, "layout"),
        ("protocol_version", "1999-01-01", "protocol version"),
        ("protocol_version", None, "protocol_version must be a str"),
        ("log_level", "loud", "log level"),
        ("subscriptions", ["ok", 3], "strings"),
        ("subscriptions", "uri", "subscriptions must be a list"),
        ("state", "closed", "cannot be 'closed'"),
        ("client_capabilities", [], "client_capabilities must be a dict"),
        ("client_info", None, "client_info must be a dict"),
        ("v", True, "layout"),
        ("last_question_id", -1, "must be a count"),
        ("last_question_id", True, "must be a count"),
        ("last_question_id", "3", "must be a int"),
    ],
)
def test_a_wrong_field_is_named(field: str, value: object, message: str) -> None:
    state = session_state(handshaken())
    state[field] = value
    with pytest.raises(LocalProtocolError, match=message):
        restore_session(state, INFO)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(sorted(session_state(handshaken()))), JSON))
def test_any_damage_restores_faithfully_or_is_refused(damage: dict[str, Any]) -> None:
    state = {**session_state(handshaken()), **damage}
    try:
        restored = restore_session(state, INFO)
    except LocalProtocolError:
        return
    again = session_state(restored)
    assert again == {**state, "subscriptions": sorted(set(state["subscriptions"]))}
