"""Where a client connection stands, and every change of state it can make, in one table.

:data:`TRANSITIONS` maps each :class:`ClientState` to the states it may go to next, each
with what moves it there, for both clients (:mod:`diaproto.client.websocket`,
:mod:`diaproto.client.sse`; only the WebSocket client passes through CLOSING). Both change
state in one place, ``_enter``, through :func:`transition`, which refuses any change the
table does not list.
"""

from __future__ import annotations

from enum import Enum

from diaproto.errors import LocalProtocolError


class ClientState(Enum):
    """Where a client connection stands."""

    CONNECTING = "connecting"  # request sent, no answer yet
    OPEN = "open"
    CLOSING = "closing"  # our close frame is out (WebSocket only)
    CLOSED = "closed"


_FAILURE = "a protocol error in the server's bytes"

#: state -> {the state it may go to: what moves it there}.
TRANSITIONS: dict[ClientState, dict[ClientState, tuple[str, ...]]] = {
    ClientState.CONNECTING: {
        ClientState.OPEN: ("the upgrade is accepted", "a 200 text/event-stream answer"),
        ClientState.CLOSED: (
            "any other answer (one Rejected event)",
            "an invalid answer",
            "the handshake timeout",
            "`close`",
            "the server's EOF",
        ),
    },
    ClientState.OPEN: {
        ClientState.CLOSING: ("our close frame is sent: `close`, the ping or idle timeout",),
        ClientState.CLOSED: (
            "the server's close frame (answered), or the end of the SSE body",
            _FAILURE,
            "the SSE idle timeout",
            "`close` (SSE)",
            "the server's EOF",
        ),
    },
    ClientState.CLOSING: {
        ClientState.CLOSED: (
            "the server's close frame",
            _FAILURE,
            "the close timeout",
            "the server's EOF",
        ),
    },
    ClientState.CLOSED: {},
}


def transition(current: ClientState, new: ClientState) -> ClientState:
    """``new``, once the table allows the move from ``current``."""
    if new not in TRANSITIONS[current]:
        raise LocalProtocolError(f"no transition from {current.name} to {new.name}")
    return new
