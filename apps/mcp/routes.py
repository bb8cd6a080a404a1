"""Routes: the live SSE responses and WebSockets that carry a peer's messages.

A peer's standing route is its WebSocket, its legacy SSE stream or its GET stream; a request
answered with a stream has a route of its own. On Streamable HTTP at 2025-11-25 an SSE route
is resumable: each event is recorded in the peer's event store as it leaves, and gets its id
from there, and the stream opens with a priming event (an id, no data) so that a client that
loses it at once can still resume.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from functools import partial

from diaproto.apps.mcp.peer import McpPeer, Transport
from diaproto.mcp import EventStore, McpChannel, RequestId
from diaproto.mcp.channel import CONTROL
from diaproto.runtime import Session
from diaproto.sse import SseEvent


@dataclass(eq=False)
class Route:
    """A live SSE response or WebSocket carrying a peer's messages."""

    conn: Session
    channel: McpChannel
    request_id: RequestId | None = None  # None: the standing route
    stream: str | None = None  # the event store's name for it (resumable streams)
    backlog: deque[tuple[str, str]] = field(default_factory=deque)  # recorded, not yet re-sent


def open_sse_route(
    conn: Session,
    peer: McpPeer,
    request_id: RequestId | None,
    now: float,
    *,
    retry_ms: int | None,
    stream: str | None = None,
    prime: bool = True,
) -> Route:
    """Answer ``conn`` with an SSE stream carrying ``peer``'s messages about ``request_id``
    (or its standing ones). At 2025-11-25 it is resumable: recorded in the peer's event store
    under ``stream`` (a new one unless given), and opened with a priming event unless
    ``prime`` is False (a resumed stream)."""
    store = peer.store if peer.transport is Transport.STREAMABLE else None
    if store is not None and stream is None:
        stream = peer.new_stream(request_id)
    stamp = None if store is None or stream is None else partial(_stamp, store, stream)
    conn.conn.accept_sse(now=now, stamp=stamp)
    channel = McpChannel(conn.conn, now, sse=True)
    if stamp is not None and prime:
        # One retry field per stream: the connection's own opens it, when it sends one.
        own = conn.conn.config.sse_retry_ms is None
        conn.conn.send(CONTROL, SseEvent(data="", retry=retry_ms if own else None), now)
    return Route(conn, channel, request_id, stream)


def _stamp(store: EventStore, stream: str, event: SseEvent) -> SseEvent:
    """Record an event as it leaves and give it its id (a replayed one keeps its own)."""
    if event.id is not None:
        return event
    return replace(event, id=store.store(stream, event.data))
