"""The MCP server of ``diaproto serve``: every transport, on the service's one port.

- ``/mcp`` Streamable HTTP: at 2025-11-25 and earlier with sessions
  (:mod:`.transports.streamable_http`), at 2026-07-28 stateless (:mod:`.transports.stateless`).
- ``/mcp`` WebSocket with the ``mcp`` subprotocol (:mod:`.transports.websocket`).
- ``/sse`` + ``/messages?session_id=`` the legacy HTTP+SSE transport
  (:mod:`.transports.legacy_sse`).
- ``/mcp/audio/<id>.wav`` long ``speak`` results, linked from the result (an absolute URL).

This module routes each event to its transport and holds what they share: the tools and
their calls (run on the service's shared generations), the routes that carry a peer's
messages, the audio kept for links, and the expiry of idle sessions. The protocol decisions
live in :mod:`diaproto.mcp` (the core).
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from diaproto.apps.mcp.catalog import Catalog
from diaproto.apps.mcp.peer import McpPeer, Transport
from diaproto.apps.mcp.responses import answer, answer_json, refuse
from diaproto.apps.mcp.routes import Route, open_sse_route
from diaproto.apps.mcp.shared_sessions import SessionSharing, SharedSessions
from diaproto.apps.mcp.speak import SpeakCall
from diaproto.apps.mcp.tools import TOOLS, error_result, list_voices_result, parse_speak
from diaproto.apps.mcp.transports.legacy_sse import LegacySse
from diaproto.apps.mcp.transports.stateless import StatelessHttp
from diaproto.apps.mcp.transports.streamable_http import StreamableHttp
from diaproto.apps.mcp.transports.websocket import McpWebSocket
from diaproto.apps.serve.limits import GenerationRefused
from diaproto.apps.serve.requests import BadRequest, StreamRequest
from diaproto.events import (
    ConnectionClosed,
    Event,
    Headers,
    Request,
    SseRequest,
    StreamPaused,
    StreamResumed,
    WebSocketMessage,
    WebSocketRequest,
)
from diaproto.headers import header_values
from diaproto.mcp import (
    BULK,
    HttpRefusal,
    McpHttpConfig,
    McpSession,
    RequestId,
    ServerInfo,
    SessionRegistry,
    Tool,
    ToolCall,
    check_access,
)
from diaproto.mcp.http import STATUS_OF_CODE, base_url
from diaproto.mcp.stateless import is_modern
from diaproto.runtime import Cancellable, Runtime, Session
from diaproto.sse import SseEvent

if TYPE_CHECKING:
    from diaproto.apps.serve.generation import Generation

log = logging.getLogger("diaproto.mcp")

KEEP_AUDIO_BYTES = 64 << 20  # finished long clips kept for their links (oldest go first)
MCP_PATHS = ("/mcp", "/sse", "/messages")

# (runtime, request, owner) -> the generation; GenerationRefused when the owner may not start one.
StartGeneration = Callable[[Runtime, StreamRequest, str], "Generation"]
#: An application's own tool: runs on the loop; answers (now or later) with
#: ``peer.session.respond(call.request_id, result)`` and ``peer.pump(now)``, and may report
#: ``peer.session.progress(...)`` / ``partial_result(...)`` meanwhile.
ToolHandler = Callable[[McpPeer, ToolCall, float], None]


class McpService:
    def __init__(
        self,
        start_generation: StartGeneration,
        *,
        config: McpHttpConfig | None = None,
        info: ServerInfo | None = None,
        shared: SharedSessions | None = None,
    ) -> None:
        self.config = config or McpHttpConfig()
        self.info = info or ServerInfo(
            "diaproto", "0.1.0", "Speak text with the Dia voice: call speak, stream the audio."
        )
        self._start_generation = start_generation
        self.on_call: Callable[[str], None] | None = None  # counts calls (metrics)
        #: Counts refused ``initialize`` requests (metrics), by why: ``"peer"`` (that peer's
        #: sessions are all in use) or ``"full"`` (every session is in use).
        self.on_session_refused: Callable[[str], None] | None = None
        self.tools: tuple[Tool, ...] = TOOLS
        self._handlers: dict[str, ToolHandler] = {}
        self.catalog = Catalog()  # resources, prompts, completion (none by default)
        #: The Streamable HTTP (2025-11-25) sessions, by ``MCP-Session-Id``.
        self.sessions: SessionRegistry[McpPeer] = SessionRegistry(
            self.config.session_idle_timeout,
            max_sessions=self.config.max_sessions,
            max_per_owner=self.config.max_sessions_per_peer,
        )
        #: Sessions any worker serves (``serve --cluster``): their state in a shared store.
        self.sharing = SessionSharing(self, shared) if shared is not None else None
        self.streamable = StreamableHttp(self)
        self.stateless = StatelessHttp(self)
        self.legacy_sse = LegacySse(self)
        self.websocket = McpWebSocket(self)
        #: What each connection carries: a peer's stream (an SSE response or a WebSocket).
        self.carried: dict[Session, tuple[McpPeer, Route]] = {}
        #: POSTs waiting for their request's answer (JSON, or the stream it opens).
        self.waiting: dict[Session, McpPeer] = {}
        self._audio: OrderedDict[str, bytes] = OrderedDict()
        self._expiry: Cancellable | None = None
        self._runtime: Runtime | None = None  # the loop's, for the expiry timer
        #: Where links in results point: the request being handled's, as calls start
        #: synchronously inside it (a WebSocket's is its upgrade request's).
        self.base_url = ""

    @staticmethod
    def serves(path: str) -> bool:
        return path in MCP_PATHS or path.startswith("/mcp/")

    def new_session(self) -> McpSession:
        """A session that starts with the ``initialize`` handshake, offering our tools."""
        return McpSession(self.info, self.tools, features=self.catalog.features)

    # --- events --------------------------------------------------------------------------------

    def handle_event(self, conn: Session, event: Event) -> None:
        now = conn.runtime.now()
        self._runtime = conn.runtime
        match event:
            case Request(method=method, target=target, headers=headers, body=body):
                self._http(conn, method, target, headers, body, last_event_id=None, now=now)
            case SseRequest(method=method, target=target, headers=headers, body=body):
                self._http(
                    conn, method, target, headers, body, last_event_id=event.last_event_id, now=now
                )
            case WebSocketRequest():
                self.websocket.request(conn, event, now)
            case WebSocketMessage(data=data):
                self.websocket.message(conn, data, now)
            case StreamPaused() | StreamResumed() if event.stream_id == BULK:
                entry = self.carried.get(conn)
                if entry is not None:
                    peer, route = entry
                    if isinstance(event, StreamPaused):
                        peer.hold_calls(route, held=True)
                    else:
                        peer.drain(route, now)
            case ConnectionClosed():
                self._closed(conn, now)

    def shutdown(self) -> None:
        for peer in {*self.websocket.peers.values(), *self.legacy_sse.peers.values()}:
            peer.session.close()
        for session_id in list(self.sessions):
            registered = self.sessions.remove(session_id)
            if registered is not None:
                registered.session.close()
        if self._expiry is not None:
            self._expiry.cancel()

    def _http(
        self,
        conn: Session,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
        *,
        last_event_id: str | None,
        now: float,
    ) -> None:
        parts = urlsplit(target)
        path = parts.path
        refusal = check_access(headers, self.config)
        self.base_url = base_url(headers, self.config)
        if refusal is not None:
            refuse(conn, refusal, now)
        elif path == "/mcp":
            if is_modern(headers):
                self.stateless.handle(conn, method, headers, body, now)
            elif len(header_values(headers, "mcp-protocol-version")) > 1:
                # Which revision would be a guess (2026-07-28's checks refuse it so too).
                refuse(conn, HttpRefusal(400, "MCP-Protocol-Version is sent twice"), now)
            else:
                self.streamable.handle(
                    conn, method, headers, body, now, last_event_id=last_event_id
                )
        elif path == "/sse":
            self.legacy_sse.stream(conn, method, headers, now)
        elif path == "/messages":
            self.legacy_sse.post(conn, method, parts.query, body, now)
        elif path.startswith("/mcp/audio/") and method in ("GET", "HEAD"):
            self._audio_file(conn, path.removeprefix("/mcp/audio/"), now)
        else:
            # No redirect from /mcp/ to /mcp (or anywhere): a client must use the exact path.
            refuse(conn, HttpRefusal(404, f"no MCP endpoint at {path}"), now)

    # --- calls ---------------------------------------------------------------------------------

    def open_sessions(self) -> dict[str, int]:
        """Open MCP sessions by transport (2026-07-28 requests have none)."""
        return {
            Transport.STREAMABLE.value: len(self.sessions),
            Transport.LEGACY_SSE.value: len(self.legacy_sse.peers),
            Transport.WEBSOCKET.value: len(self.websocket.peers),
        }

    def input_schema(self, name: str) -> dict[str, Any] | None:
        """The input schema of the tool of this name (for its ``Mcp-Param-*`` headers)."""
        return next((tool.input_schema for tool in self.tools if tool.name == name), None)

    def add_tool(self, tool: Tool, handler: ToolHandler) -> None:
        """Offer another tool besides speak and list_voices (sessions opened from now on)."""
        if any(known.name == tool.name for known in self.tools):
            raise ValueError(f"a tool named {tool.name!r} is already offered")
        self.tools = (*self.tools, tool)
        self._handlers[tool.name] = handler

    def start_call(self, peer: McpPeer, call: ToolCall, now: float) -> None:
        if self.on_call is not None:
            self.on_call(call.name)
        handler = self._handlers.get(call.name)
        if handler is not None:
            # 2026-07-28: the stream opens with the call's first message (McpPeer._send),
            # so an error that is its only answer is JSON with its code's HTTP status.
            if peer.transport is not Transport.MODERN:
                waiting = peer.json_waiting.pop(call.request_id, None)
                if waiting is not None:
                    self.open_post_stream(peer, waiting, call.request_id, now)
            handler(peer, call, now)
            return
        if call.name == "list_voices":
            peer.session.respond(call.request_id, list_voices_result())
            return
        try:
            request = parse_speak(call.arguments)
        except BadRequest as exc:
            peer.session.respond(call.request_id, error_result(str(exc)))
            return
        waiting = peer.json_waiting.pop(call.request_id, None)
        if waiting is not None:
            # A call streams: answer its POST with an SSE stream (resumable at 2025-11-25).
            self.open_post_stream(peer, waiting, call.request_id, now)
        speak = SpeakCall(
            peer,
            call.request_id,
            request.text,
            request.voice,
            inline_limit=self.config.max_inline_audio_bytes,
            link_base=self.base_url,
        )
        try:
            generation = self._start_generation(peer.runtime, request, peer.owner)
        except GenerationRefused as exc:
            peer.session.respond(call.request_id, error_result(str(exc)))
            return
        peer.calls[call.request_id] = speak
        speak.generation = generation
        generation.attach(speak)

    def stop_call(self, call: SpeakCall, *, cancelled: bool) -> None:
        if call.generation is not None:
            call.generation.detach(call, cancelled=cancelled, grace=0.0)

    # --- routes --------------------------------------------------------------------------------

    def open_post_stream(
        self, peer: McpPeer, conn: Session, request_id: RequestId, now: float
    ) -> Route:
        self.waiting.pop(conn, None)
        route = self.open_route(conn, peer, request_id, now)
        peer.routes[request_id] = route
        return route

    def open_route(
        self,
        conn: Session,
        peer: McpPeer,
        request_id: RequestId | None,
        now: float,
        *,
        stream: str | None = None,
        prime: bool = True,
    ) -> Route:
        """Answer ``conn`` with an SSE stream that carries ``peer``'s messages (those about
        ``request_id``, or the standing ones); resumable, under ``stream``, at 2025-11-25."""
        retry_ms = self.config.retry_ms
        route = open_sse_route(
            conn, peer, request_id, now, retry_ms=retry_ms, stream=stream, prime=prime
        )
        self.carried[conn] = (peer, route)
        return route

    def forget_route(self, route: Route) -> None:
        entry = self.carried.get(route.conn)
        if entry is not None and entry[1] is route:
            del self.carried[route.conn]

    # --- responses -----------------------------------------------------------------------------

    def respond_json(
        self, conn: Session, text: str, now: float, *, error_code: int | None = None
    ) -> None:
        """A request's answer as ``application/json``; with ``error_code`` (2026-07-28) the
        HTTP status of that code (404 for -32601, 400 for -32602)."""
        self.waiting.pop(conn, None)
        status = 200 if error_code is None else STATUS_OF_CODE.get(error_code, 200)
        answer_json(conn, text, now, status=status)

    def respond_empty(self, conn: Session, now: float) -> None:
        """A request cancelled before its answer: its POST ends without a message."""
        self.waiting.pop(conn, None)
        if conn.conn.state.value == "request_received":
            answer(conn, 202, b"", None, now)

    # --- audio links ---------------------------------------------------------------------------

    def keep_audio(self, wav: bytes) -> str:
        name = secrets.token_urlsafe(12)
        self._audio[name] = wav
        while len(self._audio) > 1 and sum(map(len, self._audio.values())) > KEEP_AUDIO_BYTES:
            self._audio.popitem(last=False)
        return f"/mcp/audio/{name}.wav"

    def _audio_file(self, conn: Session, name: str, now: float) -> None:
        wav = self._audio.get(name.removesuffix(".wav"))
        if wav is None:
            refuse(conn, HttpRefusal(404, "no such clip (clips are kept briefly)"), now)
            return
        answer(conn, 200, wav, "audio/wav", now)

    # --- lifetimes -----------------------------------------------------------------------------

    def buffered_bytes(self) -> int:
        """Bytes held for MCP clients (queued and in the transport), all connections."""
        return sum(conn.conn.scheduler.buffered_bytes for conn in self.carried)

    def close_streams(self, now: float) -> int:
        """Close every Streamable HTTP (2025-11-25) stream; sessions and calls go on.

        The revision lets a server close a stream at any time after ``retry``: its client
        resumes with ``Last-Event-ID`` and misses nothing. For draining a server, and tests.
        Returns the number of streams closed."""
        closed = 0
        for conn, (peer, _route) in list(self.carried.items()):
            if peer.transport is Transport.STREAMABLE:
                conn.conn.close(now)
                # Now, not at ConnectionClosed: what calls send next goes to the event store.
                self._route_closed(conn, *self.carried.pop(conn), now)
                conn.wake()
                closed += 1
        return closed

    def _closed(self, conn: Session, now: float) -> None:
        websocket = self.websocket.closed(conn)
        entry = self.carried.pop(conn, None)
        if entry is not None:
            self._route_closed(conn, *entry, now)
        elif websocket is not None:
            websocket.close(now)
        waiting = self.waiting.pop(conn, None)
        if waiting is not None:
            for request_id, waiting_conn in list(waiting.json_waiting.items()):
                if waiting_conn is conn:
                    del waiting.json_waiting[request_id]
            if waiting.transport is Transport.MODERN:
                waiting.close(now)

    def _route_closed(self, conn: Session, peer: McpPeer, route: Route, now: float) -> None:
        if peer.store is not None and route.stream is not None:
            # Never sent: recorded after what was, so the client's resume replays it.
            for payload in conn.conn.unsent:
                if isinstance(payload, SseEvent) and payload.id is None:
                    peer.store.store(route.stream, payload.data)
        peer.route_closed(route, now)
        if peer.transport is Transport.LEGACY_SSE and peer.session_id is not None:
            self.legacy_sse.peers.pop(peer.session_id, None)

    def schedule_expiry(self, now: float) -> None:
        deadline = self.sessions.next_deadline()
        if deadline is None or self._expiry is not None or self._runtime is None:
            return
        self._expiry = self._runtime.call_later(max(deadline - now, 0.0), self._expire)

    def _expire(self) -> None:
        self._expiry = None
        assert self._runtime is not None
        now = self._runtime.now()
        for peer in self.sessions.expire(now, lambda peer: peer.busy):
            log.info("MCP session %s expired", peer.session_id)
            peer.close(now)
        self.schedule_expiry(now)
