"""Streamable HTTP at 2026-07-28 (``MCP-Protocol-Version: 2026-07-28``): stateless requests.

``POST /mcp`` only, no session and no handshake: each request carries its protocol version
and the client's capabilities in ``_meta``, gets a session of its own, ready at once, and is
answered with JSON or a stream of its own, whose closing cancels it. The request checks are
the core's (:mod:`diaproto.mcp.stateless`); an error that is a request's only answer carries
its code's HTTP status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diaproto.apps.mcp.peer import McpPeer, Transport
from diaproto.apps.mcp.responses import answer, answer_json, method_not_allowed, refuse
from diaproto.events import Headers
from diaproto.headers import header_values
from diaproto.mcp import (
    HttpRefusal,
    JsonRpcError,
    JsonRpcNotification,
    JsonRpcRequest,
    McpSession,
    check_post,
    encode_message,
    parse_message,
)
from diaproto.mcp.http import STATUS_OF_CODE, peer_host
from diaproto.mcp.protocol import META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION
from diaproto.mcp.stateless import check_request, unsupported_version
from diaproto.runtime import Session

if TYPE_CHECKING:
    from diaproto.apps.mcp.service import McpService


class StatelessHttp:
    """``/mcp`` at 2026-07-28: one peer per request, gone with its request."""

    def __init__(self, service: McpService) -> None:
        self.service = service

    def handle(self, conn: Session, method: str, headers: Headers, body: bytes, now: float) -> None:
        if method != "POST":
            refuse(conn, method_not_allowed("POST"), now)
            return
        service = self.service
        refusal = check_post(headers, body, service.config)
        if refusal is not None:
            refuse(conn, refusal, now)
            return
        try:
            message = parse_message(body)
        except JsonRpcError as exc:
            refuse(conn, HttpRefusal(400, exc.message, exc.code), now)
            return
        version = header_values(headers, "mcp-protocol-version")[0].strip()
        if not isinstance(message, JsonRpcRequest):
            error = unsupported_version(version) if version != "2026-07-28" else None
            if error is not None:
                refuse(conn, HttpRefusal(400, error.message, error.code), now)
            elif isinstance(message, JsonRpcNotification):
                # No client notifications at 2026-07-28 (cancelling is closing the stream).
                answer(conn, 202, b"", None, now)
            else:
                refuse(conn, HttpRefusal(400, "a response has no request to answer"), now)
            return
        error = check_request(message, headers, service.input_schema)
        if error is not None:
            status = STATUS_OF_CODE.get(error.code, 400)
            answer_json(conn, encode_message(error.as_response()), now, status=status)
            return
        meta = (message.params or {})["_meta"]
        session = McpSession.ready(
            service.info,
            service.tools,
            meta[META_PROTOCOL_VERSION],
            meta[META_CLIENT_CAPABILITIES],
            service.catalog.features,
        )
        peer = McpPeer(service, session, conn.runtime, Transport.MODERN, owner=peer_host(conn.peer))
        peer.json_waiting[message.id] = conn
        service.waiting[conn] = peer
        session.receive(message)
        peer.pump(now)
