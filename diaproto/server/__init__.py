"""The server connection: one HTTP/1.1 connection that becomes SSE streams or a WebSocket.

:class:`ServerConnection` is the object an adapter pumps; :class:`State` is where it stands.
"""

from __future__ import annotations

from diaproto.server.connection import ServerConnection
from diaproto.server.state import State

__all__ = ["ServerConnection", "State"]
