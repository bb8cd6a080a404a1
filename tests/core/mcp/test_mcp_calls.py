"""What may still be sent about a call in flight: progress that strictly increases, and
partial results (SEP-2998) with the capability and a token."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp_session_support import call, outbound, ready

from diaproto.errors import LocalProtocolError
from diaproto.mcp.protocol import PARTIAL_RESULT_METHOD, Kind

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
