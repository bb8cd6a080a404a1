"""The server connection: one HTTP/1.1 connection that becomes SSE streams or a WebSocket.

:class:`ServerConnection` is the object an adapter pumps; :class:`State` is where it stands.
:class:`MessageConnection` is the same protocol in whole messages, for a server that frames
them itself (an ASGI server).
"""

from __future__ import annotations

from diaproto.server.connection import ServerConnection
from diaproto.server.messages import MessageConnection
from diaproto.server.state import State

__all__ = ["MessageConnection", "ServerConnection", "State"]
