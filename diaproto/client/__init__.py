"""Client connections with the same pump contract as the server: WebSocket and SSE.

For tests, benchmarks and Python users. :class:`WebSocketClientConnection` decodes the
diaproto wire protocol when the server picks ``diaproto.v1``; :class:`SseClientConnection`
tracks the last event id so a reconnect can resume with ``Last-Event-ID``. Both move
through :class:`ClientState` by one table (:mod:`diaproto.client.state`).
"""

from __future__ import annotations

from diaproto.client.sse import SseClientConnection
from diaproto.client.state import ClientState
from diaproto.client.websocket import WebSocketClientConnection

__all__ = ["ClientState", "SseClientConnection", "WebSocketClientConnection"]
