"""MCP over a WebSocket at ``/mcp`` with the ``mcp`` subprotocol (SEP-1288 draft).

One JSON-RPC message per text frame, both ways; a binary frame is closed with 1003. The
session lives as long as the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from diaproto.apps.mcp.peer import McpPeer, Transport
from diaproto.apps.mcp.responses import refuse
from diaproto.apps.mcp.routes import Route
from diaproto.errors import CloseCode
from diaproto.events import WebSocketRequest
from diaproto.mcp import HttpRefusal, JsonRpcError, McpChannel, check_access, parse_message
from diaproto.mcp.http import base_url, peer_host
from diaproto.runtime import Session

if TYPE_CHECKING:
    from diaproto.apps.mcp.service import McpService

SUBPROTOCOL = "mcp"


class McpWebSocket:
    """The open MCP WebSockets, each with its peer and the base URL of its links."""

    def __init__(self, service: McpService) -> None:
        self.service = service
        self.peers: dict[Session, McpPeer] = {}
        # Links in results point where the upgrade request came to.
        self._bases: dict[Session, str] = {}

    def request(self, conn: Session, request: WebSocketRequest, now: float) -> None:
        config = self.service.config
        refusal = check_access(request.headers, config)
        if refusal is None and urlsplit(request.target).path != "/mcp":
            refusal = HttpRefusal(404, "the MCP WebSocket is at /mcp")
        if refusal is None and SUBPROTOCOL not in request.subprotocols:
            refusal = HttpRefusal(400, f"offer the WebSocket subprotocol {SUBPROTOCOL!r}")
        if refusal is not None:
            refuse(conn, refusal, now)
            return
        conn.conn.accept_websocket(SUBPROTOCOL, now=now)
        self._bases[conn] = base_url(request.headers, config)
        peer = McpPeer(
            self.service,
            self.service.new_session(),
            conn.runtime,
            Transport.WEBSOCKET,
            owner=peer_host(conn.peer),
        )
        route = Route(conn, McpChannel(conn.conn, now, sse=False))
        peer.standing = route
        self.peers[conn] = peer
        self.service.carried[conn] = (peer, route)

    def message(self, conn: Session, data: bytes | str, now: float) -> None:
        peer = self.peers.get(conn)
        if peer is None:
            return
        self.service.base_url = self._bases.get(conn, "")
        if isinstance(data, bytes):
            conn.conn.close(
                now, CloseCode.UNSUPPORTED_DATA, "MCP over WebSocket is text frames only"
            )
            return
        try:
            message = parse_message(data)
        except JsonRpcError as exc:
            peer.session.refuse(exc.as_response())
        else:
            peer.session.receive(message)
        peer.pump(now)

    def closed(self, conn: Session) -> McpPeer | None:
        """Forget a connection; its peer, when it was an MCP WebSocket."""
        self._bases.pop(conn, None)
        return self.peers.pop(conn, None)
