"""The MCP session state machine: its states, what it answers in each, answering and
cancelling calls, logging, close, 2026-07-28 retries of input-required requests, and a
hypothesis state machine over random message sequences checking the per-request
invariants."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import settings, stateful
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from mcp_session_support import (
    INFO,
    MODERN,
    SPEAK,
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

from diaproto.errors import LocalProtocolError
from diaproto.mcp.events import CallCancelled, McpEvent, ToolCall
from diaproto.mcp.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    JsonRpcErrorResponse,
    JsonRpcResponse,
    RequestId,
    parse_message,
)
from diaproto.mcp.protocol import LOG_LEVELS, Kind
from diaproto.mcp.session import McpSession, SessionState


def test_ping_is_answered_in_every_state() -> None:
    session = new_session()
    send(session, id="p", method="ping")
    assert only(session) == {"jsonrpc": "2.0", "id": "p", "result": {}}
    initialize(session)
    send(session, id="q", method="ping")
    assert only(session)["result"] == {}


def test_other_notifications_and_client_responses_need_nothing() -> None:
    session = ready()
    send(session, method="notifications/roots/list_changed")
    send(session, method="notifications/progress", params={"progressToken": 1, "progress": 1})
    send(session, id=5, result={})
    send(session, id=5, error={"code": 1, "message": "no"})
    assert outbound(session) == []
    assert events(session) == []


def test_a_request_id_in_use_is_refused() -> None:
    session = ready()
    call(session, 1, progress="t")
    send(session, id=1, method="ping")
    assert error_code(session, 1) == INVALID_REQUEST
    assert session.in_flight == (1,)
    assert session.respond(1, {"content": []})
    assert only(session)["result"] == {"content": []}


# --- answering calls -----------------------------------------------------------------------


def test_respond_once() -> None:
    session = ready()
    call(session, 1)
    assert session.respond(1, {"content": [], "isError": False})
    [message] = outbound(session)
    assert (message.kind, message.related, message.final) == (Kind.RESPONSE, 1, True)
    assert parse_message(message.text) == JsonRpcResponse(1, {"content": [], "isError": False})
    assert session.in_flight == ()
    assert not session.respond(1, {})
    assert not session.fail(1, -32603, "late")
    assert outbound(session) == []


@pytest.mark.parametrize("failing", [False, True])
def test_a_final_carries_the_calls_progress_token(failing: bool) -> None:
    """So the channel can withdraw a progress report still queued for the call."""
    session = ready()
    call(session, 1, progress="tok")
    if failing:
        session.fail(1, -32603, "no")
    else:
        session.respond(1, {})
    [message] = outbound(session)
    assert (message.final, message.progress_token) == (True, "tok")


def test_fail_sends_the_error() -> None:
    session = ready()
    call(session, "f")
    assert session.fail("f", -32603, "broke", {"why": 1})
    [message] = outbound(session)
    assert message.final
    assert parse_message(message.text) == JsonRpcErrorResponse("f", -32603, "broke", {"why": 1})
    assert not session.fail("f", -32603, "again")


def test_respond_to_an_unknown_request() -> None:
    session = ready()
    assert not session.respond(99, {})
    assert outbound(session) == []


def test_refuse_answers_an_unparseable_message() -> None:
    session = new_session()
    session.refuse(JsonRpcErrorResponse(None, -32700, "parse error"))
    [message] = outbound(session)
    assert (message.kind, message.related, message.final) == (Kind.RESPONSE, None, True)
    assert json.loads(message.text)["error"]["code"] == -32700


# --- cancellation --------------------------------------------------------------------------


def test_cancel_stops_a_call_and_its_response() -> None:
    session = ready()
    call(session, 1, progress="t")
    send(session, method="notifications/cancelled", params={"requestId": 1, "reason": "bored"})
    assert events(session) == [CallCancelled(1, "bored")]
    assert session.in_flight == ()
    assert not session.respond(1, {"content": []})
    assert not session.progress(1, 0.5)
    assert outbound(session) == []


def test_cancel_without_a_string_reason() -> None:
    session = ready()
    call(session, "s")
    send(session, method="notifications/cancelled", params={"requestId": "s", "reason": 5})
    assert events(session) == [CallCancelled("s", None)]


@pytest.mark.parametrize(
    "params",
    [
        {"requestId": 2},  # unknown
        {"requestId": "1"},  # a string is not the integer id
        {"requestId": True},  # a bool is not id 1
        {"requestId": 1.0},
        {"requestId": None},
        {},
        None,
    ],
)
def test_cancelling_something_else_does_nothing(params: dict[str, Any] | None) -> None:
    session = ready()
    call(session, 1)
    send(session, method="notifications/cancelled", params=params)
    assert events(session) == []
    assert session.in_flight == (1,)


def test_initialize_cannot_be_cancelled() -> None:
    session = new_session()
    send(session, method="notifications/cancelled", params={"requestId": 0})
    initialize(session)
    send(session, method="notifications/cancelled", params={"requestId": 0})
    assert events(session) == []
    assert session.state is SessionState.INITIALIZING


def test_cancel_after_the_response_crossed_it() -> None:
    session = ready()
    call(session, 1)
    session.respond(1, {})
    outbound(session)
    send(session, method="notifications/cancelled", params={"requestId": 1})
    assert events(session) == []
    assert outbound(session) == []


# --- logging -------------------------------------------------------------------------------


def test_log_filtering_and_set_level() -> None:
    session = ready()
    assert not session.log("debug", "hidden")  # the default level is info
    assert session.log("info", {"k": 1}, logger="speak")
    [message] = outbound(session)
    assert message.kind is Kind.LOG
    assert message.related is None
    assert json.loads(message.text)["params"] == {
        "level": "info",
        "data": {"k": 1},
        "logger": "speak",
    }
    send(session, id=8, method="logging/setLevel", params={"level": "error"})
    assert only(session)["result"] == {}
    assert session.log_level == "error"
    assert not session.log("warning", "w")
    assert session.log("emergency", "e")
    assert json.loads(outbound(session)[0].text)["params"] == {"level": "emergency", "data": "e"}


@pytest.mark.parametrize("params", [{"level": "loud"}, {"level": None}, {}, None])
def test_set_level_refuses_unknown_levels(params: dict[str, Any] | None) -> None:
    session = ready()
    send(session, id=8, method="logging/setLevel", params=params)
    assert error_code(session, 8) == INVALID_PARAMS
    assert session.log_level == "info"


def test_log_refuses_an_unknown_level() -> None:
    with pytest.raises(LocalProtocolError):
        ready().log("loud", "x")


def test_every_level_is_known() -> None:
    session = ready()
    send(session, id=1, method="logging/setLevel", params={"level": "debug"})
    outbound(session)
    assert all(session.log(level, level) for level in LOG_LEVELS)


# --- close ---------------------------------------------------------------------------------


def test_close_cancels_calls_and_drops_what_is_queued() -> None:
    session = ready()
    call(session, 1, progress="t")
    call(session, "two")
    session.progress(1, 0.5)
    session.close()
    assert session.state is SessionState.CLOSED
    assert events(session) == [
        CallCancelled(1, "the session ended"),
        CallCancelled("two", "the session ended"),
    ]
    assert session.in_flight == ()
    assert outbound(session) == []
    assert not session.respond(1, {})
    assert not session.log("emergency", "gone")
    send(session, id=5, method="ping")
    assert outbound(session) == []
    session.close()
    assert events(session) == []


# --- 2026-07-28: retries of input-required requests, logs per request -----------------------


@pytest.mark.parametrize(
    "params",
    [
        {"inputResponses": None},
        {"inputResponses": 5},
        {"inputResponses": {"user_name": 12345}},
        {"requestState": 7},
    ],
)
def test_malformed_retries_are_invalid_params(params: dict[str, Any]) -> None:
    session = modern()
    send(session, id=1, method="tools/call", params={"name": "speak", **params})
    assert error_code(session, 1) == INVALID_PARAMS
    assert events(session) == []


def test_a_retry_reaches_the_application_whole() -> None:
    session = modern()
    params = {
        "name": "speak",
        "arguments": {},
        "inputResponses": {"confirm": {"action": "accept"}},
        "requestState": "sealed",
    }
    send(session, id=1, method="tools/call", params=params)
    [event] = events(session)
    assert isinstance(event, ToolCall) and event.params == params


def test_modern_logs_need_the_requests_level() -> None:
    session = modern()
    meta = {"io.modelcontextprotocol/logLevel": "warning"}
    send(session, id=1, method="tools/call", params={"name": "speak", "_meta": meta})
    events(session)
    assert not session.log("info", "quiet")
    assert session.log("error", "loud", related=1)
    [line] = outbound(session)
    assert (line.kind, line.related) == (Kind.LOG, 1)
    send(session, id=2, method="tools/call", params={"name": "speak"})
    assert not session.log("emergency", "none asked")


# --- random sequences ----------------------------------------------------------------------

PROGRESS_VALUES = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.5])


class SessionMachine(RuleBasedStateMachine):
    """Drives one session with random client messages and application calls, and checks
    what comes out against the per-request rules."""

    @stateful.initialize(partial=st.booleans(), modern_era=st.booleans())
    def start(self, partial: bool, modern_era: bool) -> None:
        capabilities: dict[str, Any] = {"partialResults": {}} if partial else {}
        if modern_era:
            self.session = McpSession.ready(INFO, (SPEAK,), MODERN, capabilities)
        else:
            self.session = new_session()
            initialize(self.session, capabilities=capabilities)
            send(self.session, method="notifications/initialized")
        self.next_id = 100
        self.in_flight: set[RequestId] = set()
        self.known: list[RequestId] = [0]  # initialize's id
        self.cancelled: set[RequestId] = set()
        self.finals: set[RequestId] = set()
        self.last_progress: dict[RequestId, float] = {}
        self.partial_seq: dict[RequestId, int] = {}
        self.closed = False

    def _fresh(self, as_text: bool) -> RequestId:
        self.next_id += 1
        request_id: RequestId = f"r{self.next_id}" if as_text else self.next_id
        self.known.append(request_id)
        return request_id

    def _pick(self, data: st.DataObject) -> RequestId:
        """Mostly a call in flight (where the rules bite), sometimes any other id."""
        others = st.sampled_from([*self.known, "never-sent", -1])
        if not self.in_flight:
            return data.draw(others)
        live = st.sampled_from(sorted(self.in_flight, key=str))
        return data.draw(st.one_of(live, live, others))

    @rule(as_text=st.booleans(), progress=st.booleans(), partial=st.booleans())
    def call_tool(self, as_text: bool, progress: bool, partial: bool) -> None:
        request_id = self._fresh(as_text)
        meta: dict[str, Any] = {}
        if progress:
            meta["progressToken"] = f"p-{request_id}"
        if partial:
            meta["partialResultToken"] = f"q-{request_id}"
        params = {"name": "speak", "arguments": {}, "_meta": meta}
        send(self.session, id=request_id, method="tools/call", params=params)
        if not self.closed:
            self.in_flight.add(request_id)

    @rule(as_text=st.booleans(), method=st.sampled_from(["ping", "tools/list", "nope/x"]))
    def protocol_request(self, as_text: bool, method: str) -> None:
        send(self.session, id=self._fresh(as_text), method=method)

    @rule(as_text=st.booleans())
    def unknown_tool(self, as_text: bool) -> None:
        params = {"name": "nope", "arguments": {}}
        send(self.session, id=self._fresh(as_text), method="tools/call", params=params)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        # What was queued before the cancel arrived may still go (the two cross on the
        # wire): deliver it first, then hold the session to silence about the request.
        self.flush()
        request_id = self._pick(data)
        send(self.session, method="notifications/cancelled", params={"requestId": request_id})
        if request_id in self.in_flight:
            self.in_flight.discard(request_id)
            self.cancelled.add(request_id)
            assert self._events() == [CallCancelled(request_id, None)]

    @rule(data=st.data(), failing=st.booleans())
    def answer(self, data: st.DataObject, failing: bool) -> None:
        request_id = self._pick(data)
        if failing:
            sent = self.session.fail(request_id, -32603, "no")
        else:
            sent = self.session.respond(request_id, {"content": []})
        assert sent == (request_id in self.in_flight)
        self.in_flight.discard(request_id)

    @rule(data=st.data(), values=st.lists(PROGRESS_VALUES, min_size=1, max_size=4))
    def progress(self, data: st.DataObject, values: list[float]) -> None:
        request_id = self._pick(data)
        for value in values:  # a few in a row: equal and lower values come up often
            if self.session.progress(request_id, value):
                assert request_id in self.in_flight

    @rule(data=st.data())
    def partial(self, data: st.DataObject) -> None:
        request_id = self._pick(data)
        if self.session.partial_result(request_id, [{"type": "text", "text": "x"}]):
            assert request_id in self.in_flight

    @rule(level=st.sampled_from(LOG_LEVELS))
    def log(self, level: str) -> None:
        self.session.log(level, "line")

    @rule(level=st.sampled_from(LOG_LEVELS))
    def set_level(self, level: str) -> None:
        send(
            self.session, id=self._fresh(False), method="logging/setLevel", params={"level": level}
        )

    @precondition(lambda self: len(self.known) > 12)  # late, or little happens before
    @rule()
    def close(self) -> None:
        self.session.close()
        assert outbound(self.session) == []  # what was queued is dropped with the session
        events = self._events()
        expected = set() if self.closed else self.in_flight
        assert len(events) == len(expected)
        assert set(events) == {CallCancelled(r, "the session ended") for r in expected}
        self.cancelled |= self.in_flight
        self.in_flight.clear()
        self.closed = True

    def _events(self) -> list[McpEvent]:
        return events(self.session)

    @rule()
    def flush(self) -> None:
        """The transport takes what the session queued; check it message by message."""
        for message in outbound(self.session):
            body = json.loads(message.text)
            related = message.related
            assert related not in self.finals, f"{message} after the final of {related}"
            assert related not in self.cancelled, f"{message} for a cancelled request"
            if message.kind is Kind.LOG:
                assert related is None
                continue
            assert related is not None  # every message but a log line is about a request
            if message.final:
                assert message.kind is Kind.RESPONSE
                assert body["id"] == related
                self.finals.add(related)
            elif message.kind is Kind.PROGRESS:
                value = body["params"]["progress"]
                assert value > self.last_progress.get(related, -1.0)
                self.last_progress[related] = value
            else:
                assert message.kind is Kind.PARTIAL
                assert body["params"]["seq"] == self.partial_seq.get(related, 0)
                self.partial_seq[related] = body["params"]["seq"] + 1

    @invariant()
    def in_flight_matches(self) -> None:
        if not hasattr(self, "session"):
            return
        assert set(self.session.in_flight) == self.in_flight
        for event in self._events():
            assert isinstance(event, ToolCall)
            assert event.request_id in self.in_flight
        if self.closed:
            assert self.session.in_flight == ()


SessionMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40)

test_session_machine = SessionMachine.TestCase
