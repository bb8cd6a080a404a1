"""The legacy HTTP+SSE transport (2024-11-05): ``GET /sse`` and ``POST /messages``.

The client opens an SSE stream on ``/sse``; its first event, ``endpoint``, names the URL it
posts its messages to (``/messages?session_id=``). Every answer travels on that one stream,
and the session ends with it.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from diaproto.apps.mcp.peer import McpPeer, Transport
from diaproto.apps.mcp.responses import answer, method_not_allowed, refuse
from diaproto.apps.mcp.routes import Route
from diaproto.events import Headers
from diaproto.mcp import HttpRefusal, JsonRpcError, McpChannel, check_stream, parse_message
from diaproto.mcp.http import peer_host
from diaproto.runtime import Session

if TYPE_CHECKING:
    from diaproto.apps.mcp.service import McpService


class LegacySse:
    """The open ``/sse`` streams, by the session id their ``endpoint`` event gave out."""

    def __init__(self, service: McpService) -> None:
        self.service = service
        self.peers: dict[str, McpPeer] = {}

    def stream(self, conn: Session, method: str, headers: Headers, now: float) -> None:
        """``/sse``: a new session, its stream, and where to post to it."""
        if method != "GET":
            refuse(conn, method_not_allowed("GET"), now)
            return
        refusal = check_stream(headers)
        if refusal is not None:
            refuse(conn, refusal, now)
            return
        session_id = secrets.token_hex(16)
        peer = McpPeer(
            self.service,
            self.service.new_session(),
            conn.runtime,
            Transport.LEGACY_SSE,
            owner=peer_host(conn.peer),
        )
        peer.session_id = session_id
        self.peers[session_id] = peer
        conn.conn.accept_sse(now=now)
        channel = McpChannel(conn.conn, now, sse=True)
        channel.endpoint(f"/messages?session_id={session_id}", now)
        route = Route(conn, channel)
        peer.standing = route
        self.service.carried[conn] = (peer, route)

    def post(self, conn: Session, method: str, query: str, body: bytes, now: float) -> None:
        """``/messages``: a message of the session ``session_id`` names (answered on its
        stream; the POST itself gets 202)."""
        if method != "POST":
            refuse(conn, method_not_allowed("POST"), now)
            return
        session_id = (parse_qs(query).get("session_id") or [""])[0]
        peer = self.peers.get(session_id)
        if peer is None:
            refuse(conn, HttpRefusal(404, "unknown session_id"), now)
            return
        if len(body) > self.service.config.max_body_bytes:
            refuse(conn, HttpRefusal(413, "the body is too large"), now)
            return
        try:
            message = parse_message(body)
        except JsonRpcError as exc:
            refuse(conn, HttpRefusal(400, exc.message, exc.code), now)
            return
        answer(conn, 202, b"Accepted", "text/plain", now)
        peer.session.receive(message)
        peer.pump(now)
