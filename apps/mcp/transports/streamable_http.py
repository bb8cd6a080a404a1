"""Streamable HTTP at 2025-11-25 and earlier: ``/mcp`` with the ``initialize`` handshake.

``POST`` carries the client's messages: ``initialize`` opens a session (``MCP-Session-Id``);
a request is answered with JSON or, once its call streams, with an SSE stream of its own
(priming event, ``retry``, event ids). ``GET`` opens the session's standing stream, or resumes
any of its streams with ``Last-Event-ID``; ``DELETE`` ends the session. Sessions are bounded
per client host and in all: idle ones are evicted to make room for a new one.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from diaproto.apps.mcp.peer import McpPeer, Transport
from diaproto.apps.mcp.responses import answer, answer_json, method_not_allowed, refuse
from diaproto.events import Headers
from diaproto.headers import header_values
from diaproto.mcp import (
    HttpRefusal,
    JsonRpcError,
    JsonRpcErrorResponse,
    JsonRpcRequest,
    MemoryEventStore,
    ReplayRefused,
    RequestId,
    SessionState,
    check_post,
    check_stream,
    encode_message,
    parse_message,
)
from diaproto.mcp.http import peer_host, session_header
from diaproto.mcp.jsonrpc import INVALID_REQUEST
from diaproto.mcp.protocol import DEFAULT_HTTP_VERSION, HANDSHAKE_VERSIONS
from diaproto.runtime import Session

if TYPE_CHECKING:
    from diaproto.apps.mcp.service import McpService

log = logging.getLogger("diaproto.mcp")


class StreamableHttp:
    """The sessions of ``/mcp`` at 2025-11-25 and earlier, kept in the service's registry."""

    def __init__(self, service: McpService) -> None:
        self.service = service

    def handle(
        self,
        conn: Session,
        method: str,
        headers: Headers,
        body: bytes,
        now: float,
        *,
        last_event_id: str | None,
        looked_up: bool = False,
    ) -> None:
        """``looked_up``: the shared store was asked for the session already (a request
        for a session no worker has is then a 404)."""
        if method not in ("POST", "GET", "DELETE"):
            refuse(conn, method_not_allowed("GET, POST, DELETE"), now)
            return
        if not looked_up and self._elsewhere(conn, headers, now):
            again = partial(self._again, conn, method, headers, body, last_event_id)
            assert self.service.sharing is not None
            session_id, _ = session_header(headers)
            assert session_id is not None
            self.service.sharing.adopt(conn, session_id, again)
        elif method == "POST":
            self._post(conn, headers, body, now)
        elif method == "GET":
            self._get(conn, headers, last_event_id, now)
        else:
            self._delete(conn, headers, now)

    def _elsewhere(self, conn: Session, headers: Headers, now: float) -> bool:
        """A session this worker does not hold, which another may have made."""
        if self.service.sharing is None:
            return False
        session_id, refusal = session_header(headers)
        if refusal is not None or session_id is None:
            return False
        return session_id not in self.service.sessions

    def _again(
        self,
        conn: Session,
        method: str,
        headers: Headers,
        body: bytes,
        last_event_id: str | None,
    ) -> None:
        now = conn.runtime.now()
        self.handle(conn, method, headers, body, now, last_event_id=last_event_id, looked_up=True)

    def _save(self, peer: McpPeer, now: float) -> None:
        if self.service.sharing is not None:
            self.service.sharing.save(peer, now)

    def _post(self, conn: Session, headers: Headers, body: bytes, now: float) -> None:
        refusal = check_post(headers, body, self.service.config)
        if refusal is not None:
            refuse(conn, refusal, now)
            return
        version = next(iter(header_values(headers, "mcp-protocol-version")), None)
        try:
            message = parse_message(body)
        except JsonRpcError as exc:
            refuse(conn, HttpRefusal(400, exc.message, exc.code), now)
            return
        session_id, refusal = session_header(headers)
        if refusal is not None:
            refuse(conn, refusal, now)
            return
        if isinstance(message, JsonRpcRequest) and message.method == "initialize":
            if session_id is not None:
                refuse(conn, HttpRefusal(400, "initialize starts a new session"), now)
                return
            self._initialize(conn, message, now)
            return
        if session_id is None:
            refuse(conn, HttpRefusal(400, "Mcp-Session-Id is required"), now)
            return
        peer = self.service.sessions.get(session_id, now)
        if peer is None:
            refuse(conn, HttpRefusal(404, "unknown or ended session"), now)
            return
        if (version or DEFAULT_HTTP_VERSION) not in HANDSHAKE_VERSIONS:
            refuse(conn, HttpRefusal(400, f"unsupported MCP-Protocol-Version {version}"), now)
            return
        if not isinstance(message, JsonRpcRequest):
            peer.session.receive(message)
            answer(conn, 202, b"", None, now)
            peer.pump(now)
            self._save(peer, now)  # notifications/initialized: the session is ready
            return
        if _id_in_use(peer, message.id):
            # Refused on its own POST, before anything is registered: the call that holds the
            # id keeps its stream and its answer (the session refuses it so on a WebSocket).
            log.info("MCP 400 from %s: request id %r is in use", conn.peer, message.id)
            error = JsonRpcErrorResponse(
                message.id, INVALID_REQUEST, f"request id {message.id!r} is in use"
            )
            answer_json(conn, encode_message(error), now, status=400)
            return
        peer.json_waiting[message.id] = conn
        self.service.waiting[conn] = peer
        peer.session.receive(message)
        peer.pump(now)
        self._save(peer, now)  # a log level, a subscription

    def _initialize(self, conn: Session, request: JsonRpcRequest, now: float) -> None:
        session = self.service.new_session()
        session.receive(request)
        reply = session.next_outbound()
        assert reply is not None  # initialize is always answered at once
        if session.state is not SessionState.INITIALIZING:
            # A refused initialize leaves nothing behind: no session, no id, no eviction.
            answer_json(conn, reply.text, now, status=400)
            return
        owner = peer_host(conn.peer)
        if not self._make_room(conn, owner, now):
            return
        peer = McpPeer(
            self.service,
            session,
            conn.runtime,
            Transport.STREAMABLE,
            MemoryEventStore(),
            owner=owner,
        )
        peer.session_id = self.service.sessions.add(peer, now, owner=owner)
        self.service.schedule_expiry(now)
        self._save(peer, now)
        answer_json(conn, reply.text, now, headers=(("mcp-session-id", peer.session_id),))

    def _make_room(self, conn: Session, owner: str, now: float) -> bool:
        """Room for one more session of ``owner``: idle sessions are evicted (never-used
        first, then the least recently active); False (and the request refused) when every
        candidate is in use."""
        room = self.service.sessions.make_room(owner, _in_use)
        for evicted in room.evicted:
            log.info("MCP session %s evicted (idle) to make room for %s", evicted.session_id, owner)
            evicted.close(now)
        if room.refused is None:
            return True
        if self.service.on_session_refused is not None:
            self.service.on_session_refused("peer" if room.refused == "owner" else "full")
        config = self.service.config
        retry = (("retry-after", str(config.session_retry_after)),)
        if room.refused == "owner":
            limit = config.max_sessions_per_peer
            message = f"{owner} holds {limit} MCP sessions, all in use; try again later"
            refuse(conn, HttpRefusal(429, message, headers=retry), now)
        else:
            message = "every MCP session is in use; try again later"
            refuse(conn, HttpRefusal(503, message, headers=retry), now)
        return False

    def _get(self, conn: Session, headers: Headers, last_event_id: str | None, now: float) -> None:
        refusal = check_stream(headers)
        session_id, duplicated = session_header(headers)
        refusal = refusal or duplicated
        if refusal is None and session_id is None:
            refusal = HttpRefusal(400, "Mcp-Session-Id is required")
        peer = self.service.sessions.get(session_id, now) if session_id is not None else None
        if refusal is None and peer is None:
            refusal = HttpRefusal(404, "unknown or ended session")
        if refusal is not None or peer is None:
            refuse(conn, refusal or HttpRefusal(404, "unknown session"), now)
            return
        if last_event_id is not None:
            self._resume(conn, peer, last_event_id, now)
            return
        if peer.standing is not None:
            refuse(conn, HttpRefusal(409, "this session already has a GET stream"), now)
            return
        route = self.service.open_route(conn, peer, None, now)
        peer.standing = route

    def _resume(self, conn: Session, peer: McpPeer, last_event_id: str, now: float) -> None:
        assert peer.store is not None
        try:
            stream, events = peer.store.replay_after(last_event_id)
        except ReplayRefused as exc:
            refuse(conn, HttpRefusal(400, str(exc)), now)
            return
        request_id = peer.streams.get(stream)
        old = peer.routes.get(request_id) if request_id is not None else peer.standing
        if old is not None:
            # The client gave up on that connection: this one takes over the stream.
            self.service.carried.pop(old.conn, None)
            old.channel.finish(now)
        route = self.service.open_route(conn, peer, request_id, now, stream=stream, prime=False)
        # Replayed as the client takes it (a dropped call may have much queued up).
        route.backlog.extend((event_id, text) for event_id, text in events if text)
        if request_id is None:
            peer.standing = route
        else:
            peer.routes[request_id] = route
        peer.drain(route, now)
        conn.wake()

    def _delete(self, conn: Session, headers: Headers, now: float) -> None:
        session_id, refusal = session_header(headers)
        if refusal is not None:
            refuse(conn, refusal, now)
            return
        if session_id is None:
            refuse(conn, HttpRefusal(400, "Mcp-Session-Id is required"), now)
            return
        peer = self.service.sessions.remove(session_id)
        if peer is None:
            refuse(conn, HttpRefusal(404, "unknown or ended session"), now)
            return
        if self.service.sharing is not None:
            self.service.sharing.forget(session_id)
        peer.close(now)
        answer(conn, 204, b"", None, now)


def _in_use(peer: McpPeer) -> bool:
    """Not to be evicted: a stream or request open, or a call in flight (one held for its
    client's resume included)."""
    return peer.busy or bool(peer.session.in_flight)


def _id_in_use(peer: McpPeer, request_id: RequestId) -> bool:
    """A call in flight (streaming, held for a resume, or not yet answered) owns its id."""
    return (
        request_id in peer.session.in_flight
        or request_id in peer.json_waiting
        or request_id in peer.routes
    )
