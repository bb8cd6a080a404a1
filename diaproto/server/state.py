"""Where a server connection stands, and every change of state it can make, in one table.

:data:`TRANSITIONS` maps each :class:`State` to the states it may go to next, each with what
moves it there (in the manner of h11's ``_state.py``). The connection changes state in one
place, ``_enter``, which refuses any change the table does not list; the state table in
``docs/architecture.md`` is written from this one by ``tools/state_table.py``.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    """Where a server connection stands: :data:`MEANINGS` says what each state is."""

    AWAITING_REQUEST = "awaiting_request"
    REQUEST_RECEIVED = "request_received"
    STREAMING = "streaming"
    WEBSOCKET = "websocket"
    CLOSING = "closing"
    CLOSED = "closed"

    # Members are singletons, equal only to themselves: the identity hash is a correct one,
    # and in C, where Enum's own runs Python code on each of _enter's table lookups.
    __hash__ = object.__hash__


#: What each state is, in a phrase.
MEANINGS: dict[State, str] = {
    State.AWAITING_REQUEST: "reading a request, or idle between requests (where it starts)",
    State.REQUEST_RECEIVED: "the application owes an answer to the request event",
    State.STREAMING: "an SSE or chunked-body response is open",
    State.WEBSOCKET: "the upgrade is accepted; messages flow both ways",
    State.CLOSING: "our close frame is out; waiting for the peer's",
    State.CLOSED: "the end: nothing more is read or written; `finished` is True",
}

# Causes shared by several states.
_EOF = "the peer's EOF"
_WRITE_TIMEOUT = "the write timeout"
_CLOSE = "`close`"

#: state -> {the state it may go to: what moves it there}.
TRANSITIONS: dict[State, dict[State, tuple[str, ...]]] = {
    State.AWAITING_REQUEST: {
        State.REQUEST_RECEIVED: ("a whole request is read (its event is handed out)",),
        State.CLOSED: (
            "a bad request (refused with its HTTP status)",
            "the handshake or keep-alive idle timeout",
            _EOF,
            _CLOSE,
            _WRITE_TIMEOUT,
        ),
    },
    State.REQUEST_RECEIVED: {
        State.AWAITING_REQUEST: ("`respond` on a persistent connection",),
        State.STREAMING: ("`accept_sse`", "`start_response`"),
        State.WEBSOCKET: ("`accept_websocket`",),
        State.CLOSED: (
            "`respond` when the connection does not persist",
            "a bad WebSocket handshake (refused with its HTTP status)",
            _EOF,
            _CLOSE,
            _WRITE_TIMEOUT,
        ),
    },
    State.STREAMING: {
        State.AWAITING_REQUEST: ("`end_response` and the queue drained, connection persists",),
        State.CLOSED: (
            "`end_response` and the queue drained, connection does not persist",
            _EOF,
            "`close` (with 1001 an SSE stream first gets a `going_away` error event)",
            "a slow consumer",
            _WRITE_TIMEOUT,
        ),
    },
    State.WEBSOCKET: {
        State.CLOSING: (
            "our close frame is sent: `close`, a slow consumer, the ping or idle timeout",
        ),
        State.CLOSED: (
            "the peer's close frame (answered)",
            "a protocol error or an oversize message (close frame sent)",
            "`close`, a slow consumer or a timeout once the peer's EOF is in, before it is read",
            _EOF,
            _WRITE_TIMEOUT,
        ),
    },
    State.CLOSING: {
        State.CLOSED: (
            "the peer's close frame",
            "a protocol error",
            "the close timeout",
            _EOF,
            _WRITE_TIMEOUT,
        ),
    },
    State.CLOSED: {},
}

#: TRANSITIONS without the causes: what ``_enter`` checks each change against.
NEXT_STATES: dict[State, frozenset[State]] = {
    state: frozenset(targets) for state, targets in TRANSITIONS.items()
}
