"""The states a client connection passes through, and the moves between them, written once.

Both clients (:mod:`diaproto.client.websocket`, :mod:`diaproto.client.sse`) change state
only through :func:`transition`, which checks :data:`TRANSITIONS`; a move the table does not
list is a bug in diaproto, not a peer's fault, so it fails an assertion.
"""

from __future__ import annotations

from enum import Enum


class ClientState(Enum):
    CONNECTING = "connecting"  # request sent, no answer yet
    OPEN = "open"
    CLOSING = "closing"  # our close frame is out (WebSocket only)
    CLOSED = "closed"


TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    # Accepted (101, or 200 with text/event-stream); or rejected, failed, timed out, closed.
    ClientState.CONNECTING: frozenset({ClientState.OPEN, ClientState.CLOSED}),
    # We send a close frame; or the peer closes, breaks the protocol, or the transport ends.
    ClientState.OPEN: frozenset({ClientState.CLOSING, ClientState.CLOSED}),
    # The peer answers our close frame, or close_timeout passes.
    ClientState.CLOSING: frozenset({ClientState.CLOSED}),
    ClientState.CLOSED: frozenset(),
}


def transition(current: ClientState, new: ClientState) -> ClientState:
    """``new``, once the table allows the move from ``current``."""
    assert new in TRANSITIONS[current], f"client state {current.name} -> {new.name}"
    return new
