"""What of an MCP session can move to another process: the handshake's outcome, not the
calls in flight.

A session made by ``initialize`` on one worker must serve the client's next request on any
worker (behind a balancer with no sticky routing, or after a worker died). What that needs
is what the handshake and the client's settings decided: the protocol revision, the
client's capabilities and identity, its log level and its resource subscriptions, and the
last id of our requests to the client (ids are never reused within a session).
:func:`session_state` writes them as a JSON-ready dict (for a shared store), and
:func:`restore_session` makes a session of it, checking every field, since the store is
outside this process. Calls in flight, questions to the client and queued messages are live
state of the worker that holds the client's streams; they do not move.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diaproto.errors import LocalProtocolError
from diaproto.mcp.asking import Questions
from diaproto.mcp.features import Features, Tool
from diaproto.mcp.negotiation import ServerInfo
from diaproto.mcp.protocol import LOG_LEVELS, SUPPORTED_VERSIONS
from diaproto.mcp.session import McpSession, SessionState

STATE_VERSION = 1
"""The layout of :func:`session_state`'s dict; :func:`restore_session` refuses others."""

PORTABLE_STATES = {SessionState.INITIALIZING.value, SessionState.READY.value}


def session_state(session: McpSession) -> dict[str, Any]:
    """The session's portable part, as a dict of JSON values. Only a session past
    ``initialize`` and not closed has one (else :class:`LocalProtocolError`)."""
    if session.state.value not in PORTABLE_STATES:
        raise LocalProtocolError(f"a session in state {session.state.value} has nothing to move")
    return {
        "v": STATE_VERSION,
        "state": session.state.value,
        "protocol_version": session.protocol_version,
        "client_capabilities": session.client_capabilities,
        "client_info": session.client_info,
        "log_level": session.log_level,
        "subscriptions": sorted(session.subscriptions),
        "last_question_id": session.last_question_id,
    }


def restore_session(
    state: Mapping[str, Any],
    info: ServerInfo,
    tools: tuple[Tool, ...] = (),
    features: Features | None = None,
) -> McpSession:
    """A session from :func:`session_state`'s dict, serving ``tools`` and ``features`` as
    this process does. Every field is checked: :class:`LocalProtocolError` says which one
    is wrong (a store written by another version, or damaged)."""
    if not isinstance(state, Mapping):
        raise LocalProtocolError("a session state is a mapping")
    layout = state.get("v")
    if type(layout) is not int or layout != STATE_VERSION:
        raise LocalProtocolError(f"unknown session state layout {layout!r}")
    version = _field(state, "protocol_version", str)
    if version not in SUPPORTED_VERSIONS:
        raise LocalProtocolError(f"session state: unknown protocol version {version!r}")
    level = state.get("log_level")
    if level is not None and level not in LOG_LEVELS:
        raise LocalProtocolError(f"session state: unknown log level {level!r}")
    subscriptions = _field(state, "subscriptions", list)
    if not all(isinstance(uri, str) for uri in subscriptions):
        raise LocalProtocolError("session state: subscriptions must be strings")
    last_question_id = _field(state, "last_question_id", int)
    if type(last_question_id) is not int or last_question_id < 0:
        raise LocalProtocolError("session state: last_question_id must be a count")
    session_state_value = _field(state, "state", str)
    if session_state_value not in PORTABLE_STATES:
        raise LocalProtocolError(f"session state: a session cannot be {session_state_value!r}")
    return McpSession(
        info,
        tools,
        SessionState(session_state_value),
        version,
        client_capabilities=dict(_field(state, "client_capabilities", dict)),
        client_info=dict(_field(state, "client_info", dict)),
        log_level=level,
        features=features or Features(),
        subscriptions=set(subscriptions),
        _questions=Questions(last_question_id),
    )


def _field(state: Mapping[str, Any], name: str, kind: type) -> Any:
    value = state.get(name)
    if not isinstance(value, kind):
        raise LocalProtocolError(f"session state: {name} must be a {kind.__name__}")
    return value
