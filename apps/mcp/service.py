"""The MCP server of ``diaproto serve``: every transport, on the service's one port.

- ``/mcp`` Streamable HTTP. At 2025-11-25 and earlier (the ``initialize`` handshake):
  sessions (``MCP-Session-Id``), POST answered with JSON or with an SSE stream per call
  (priming event, ``retry``, event ids), the GET stream, resume with ``Last-Event-ID``,
  DELETE. At 2026-07-28 (``MCP-Protocol-Version: 2026-07-28``): POST only, no session, a
  stream per request whose closing cancels it.
- ``/mcp`` WebSocket with the ``mcp`` subprotocol (SEP-1288 draft): one message per text
  frame; a binary frame is closed with 1003.
- ``/sse`` + ``/messages?session_id=`` the legacy HTTP+SSE transport (2024-11-05).
- ``/mcp/audio/<id>.wav`` long ``speak`` results, linked from the result (an absolute URL).

The protocol decisions live in :mod:`diaproto.mcp` (the core); this module moves messages
between connections and the core, and runs the tools on the service's shared generations.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from diaproto.apps.mcp.catalog import Catalog
from diaproto.apps.mcp.peer import McpPeer, Route, Transport
from diaproto.apps.mcp.speak import SpeakCall
from diaproto.apps.mcp.tools import TOOLS, error_result, list_voices_result, parse_speak
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
    EventStore,
    HttpRefusal,
    JsonRpcError,
    JsonRpcErrorResponse,
    JsonRpcNotification,
    JsonRpcRequest,
    McpChannel,
    McpHttpConfig,
    McpSession,
    MemoryEventStore,
    ReplayRefused,
    RequestId,
    ServerInfo,
    SessionRegistry,
    SessionState,
    Tool,
    ToolCall,
    check_access,
    check_post,
    check_stream,
    encode_message,
    parse_message,
)
from diaproto.mcp.channel import CONTROL
from diaproto.mcp.http import STATUS_OF_CODE, base_url, peer_host, session_header
from diaproto.mcp.jsonrpc import INVALID_REQUEST
from diaproto.mcp.protocol import (
    DEFAULT_HTTP_VERSION,
    HANDSHAKE_VERSIONS,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
)
from diaproto.mcp.stateless import check_request, is_modern, unsupported_version
from diaproto.runtime import Cancellable, Runtime, Session
from diaproto.sse import SseEvent

if TYPE_CHECKING:
    from diaproto.apps.serve.generation import Generation

log = logging.getLogger("diaproto.mcp")

SUBPROTOCOL = "mcp"
CLOSE_UNSUPPORTED_DATA = 1003
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
        self.sessions: SessionRegistry[McpPeer] = SessionRegistry(
            self.config.session_idle_timeout,
            max_sessions=self.config.max_sessions,
            max_per_owner=self.config.max_sessions_per_peer,
        )
        self._legacy: dict[str, McpPeer] = {}
        self._routes: dict[Session, tuple[McpPeer, Route]] = {}
        self._websockets: dict[Session, McpPeer] = {}
        self._waiting: dict[Session, McpPeer] = {}
        self._audio: OrderedDict[str, bytes] = OrderedDict()
        self._expiry: Cancellable | None = None
        self._runtime: Runtime | None = None  # the loop's, for the expiry timer
        # Where links in results point: the request being handled's, as calls start
        # synchronously inside it (a WebSocket's is its upgrade request's).
        self._base_url = ""
        self._websocket_bases: dict[Session, str] = {}

    @staticmethod
    def serves(path: str) -> bool:
        return path in MCP_PATHS or path.startswith("/mcp/")

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
                self._websocket_request(conn, event, now)
            case WebSocketMessage(data=data):
                self._websocket_message(conn, data, now)
            case StreamPaused() | StreamResumed() if event.stream_id == BULK:
                entry = self._routes.get(conn)
                if entry is not None:
                    peer, route = entry
                    if isinstance(event, StreamPaused):
                        peer.hold_calls(route, held=True)
                    else:
                        peer.drain(route, now)
            case ConnectionClosed():
                self._closed(conn, now)

    def shutdown(self) -> None:
        for peer in {*self._websockets.values(), *self._legacy.values()}:
            peer.session.close()
        for session_id in list(self.sessions):
            registered = self.sessions.remove(session_id)
            if registered is not None:
                registered.session.close()
        if self._expiry is not None:
            self._expiry.cancel()

    # --- HTTP ----------------------------------------------------------------------------------

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
        self._base_url = base_url(headers, self.config)
        if refusal is not None:
            self._refuse(conn, refusal, now)
        elif path == "/mcp":
            if is_modern(headers):
                self._modern(conn, method, headers, body, now)
            elif len(header_values(headers, "mcp-protocol-version")) > 1:
                # Which revision would be a guess (2026-07-28's checks refuse it so too).
                self._refuse(conn, HttpRefusal(400, "MCP-Protocol-Version is sent twice"), now)
            elif method == "POST":
                self._post(conn, headers, body, now)
            elif method == "GET":
                self._get(conn, headers, last_event_id, now)
            elif method == "DELETE":
                self._delete(conn, headers, now)
            else:
                self._refuse(conn, _405("GET, POST, DELETE"), now)
        elif path == "/sse":
            if method != "GET":
                self._refuse(conn, _405("GET"), now)
            else:
                self._legacy_stream(conn, headers, now)
        elif path == "/messages":
            if method != "POST":
                self._refuse(conn, _405("POST"), now)
            else:
                self._legacy_post(conn, parts.query, headers, body, now)
        elif path.startswith("/mcp/audio/") and method in ("GET", "HEAD"):
            self._audio_file(conn, path.removeprefix("/mcp/audio/"), now)
        else:
            # No redirect from /mcp/ to /mcp (or anywhere): a client must use the exact path.
            self._refuse(conn, HttpRefusal(404, f"no MCP endpoint at {path}"), now)

    def _post(self, conn: Session, headers: Headers, body: bytes, now: float) -> None:
        refusal = check_post(headers, body, self.config)
        if refusal is not None:
            self._refuse(conn, refusal, now)
            return
        version = next(iter(header_values(headers, "mcp-protocol-version")), None)
        try:
            message = parse_message(body)
        except JsonRpcError as exc:
            self._refuse(conn, HttpRefusal(400, exc.message, exc.code), now)
            return
        session_id, refusal = session_header(headers)
        if refusal is not None:
            self._refuse(conn, refusal, now)
            return
        if isinstance(message, JsonRpcRequest) and message.method == "initialize":
            if session_id is not None:
                self._refuse(conn, HttpRefusal(400, "initialize starts a new session"), now)
                return
            self._initialize(conn, message, now)
            return
        if session_id is None:
            self._refuse(conn, HttpRefusal(400, "Mcp-Session-Id is required"), now)
            return
        peer = self.sessions.get(session_id, now)
        if peer is None:
            self._refuse(conn, HttpRefusal(404, "unknown or ended session"), now)
            return
        if (version or DEFAULT_HTTP_VERSION) not in HANDSHAKE_VERSIONS:
            self._refuse(conn, HttpRefusal(400, f"unsupported MCP-Protocol-Version {version}"), now)
            return
        if not isinstance(message, JsonRpcRequest):
            peer.session.receive(message)
            self._respond(conn, 202, b"", None, now)
            peer.pump(now)
            return
        if _id_in_use(peer, message.id):
            # Refused on its own POST, before anything is registered: the call that holds the
            # id keeps its stream and its answer (the session refuses it so on a WebSocket).
            log.info("MCP 400 from %s: request id %r is in use", conn.peer, message.id)
            error = JsonRpcErrorResponse(
                message.id, INVALID_REQUEST, f"request id {message.id!r} is in use"
            )
            self._respond_json(conn, encode_message(error), now, status=400)
            return
        peer.json_waiting[message.id] = conn
        self._waiting[conn] = peer
        peer.session.receive(message)
        peer.pump(now)

    def _initialize(self, conn: Session, request: JsonRpcRequest, now: float) -> None:
        session = McpSession(self.info, self.tools, features=self.catalog.features)
        session.receive(request)
        reply = session.next_outbound()
        assert reply is not None  # initialize is always answered at once
        if session.state is not SessionState.INITIALIZING:
            # A refused initialize leaves nothing behind: no session, no id, no eviction.
            self._respond_json(conn, reply.text, now, status=400)
            return
        owner = peer_host(conn.peer)
        if not self._make_room(conn, owner, now):
            return
        peer = McpPeer(
            self, session, conn.runtime, Transport.STREAMABLE, MemoryEventStore(), owner=owner
        )
        peer.session_id = self.sessions.add(peer, now, owner=owner)
        self._schedule_expiry(now)
        self._respond_json(conn, reply.text, now, headers=(("mcp-session-id", peer.session_id),))

    def _make_room(self, conn: Session, owner: str, now: float) -> bool:
        """Room for one more session of ``owner``: idle sessions are evicted (never-used
        first, then the least recently active); False (and the request refused) when every
        candidate is in use."""
        room = self.sessions.make_room(owner, _in_use)
        for evicted in room.evicted:
            log.info("MCP session %s evicted (idle) to make room for %s", evicted.session_id, owner)
            evicted.close(now)
        if room.refused is None:
            return True
        if self.on_session_refused is not None:
            self.on_session_refused("peer" if room.refused == "owner" else "full")
        retry = (("retry-after", str(self.config.session_retry_after)),)
        if room.refused == "owner":
            limit = self.config.max_sessions_per_peer
            message = f"{owner} holds {limit} MCP sessions, all in use; try again later"
            self._refuse(conn, HttpRefusal(429, message, headers=retry), now)
        else:
            message = "every MCP session is in use; try again later"
            self._refuse(conn, HttpRefusal(503, message, headers=retry), now)
        return False

    def _get(self, conn: Session, headers: Headers, last_event_id: str | None, now: float) -> None:
        refusal = check_stream(headers)
        session_id, duplicated = session_header(headers)
        refusal = refusal or duplicated
        if refusal is None and session_id is None:
            refusal = HttpRefusal(400, "Mcp-Session-Id is required")
        peer = self.sessions.get(session_id, now) if session_id is not None else None
        if refusal is None and peer is None:
            refusal = HttpRefusal(404, "unknown or ended session")
        if refusal is not None or peer is None:
            self._refuse(conn, refusal or HttpRefusal(404, "unknown session"), now)
            return
        if last_event_id is not None:
            self._resume(conn, peer, last_event_id, now)
            return
        if peer.standing is not None:
            self._refuse(conn, HttpRefusal(409, "this session already has a GET stream"), now)
            return
        route = self._open_route(conn, peer, None, now)
        peer.standing = route

    def _resume(self, conn: Session, peer: McpPeer, last_event_id: str, now: float) -> None:
        assert peer.store is not None
        try:
            stream, events = peer.store.replay_after(last_event_id)
        except ReplayRefused as exc:
            self._refuse(conn, HttpRefusal(400, str(exc)), now)
            return
        request_id = peer.streams.get(stream)
        old = peer.routes.get(request_id) if request_id is not None else peer.standing
        if old is not None:
            # The client gave up on that connection: this one takes over the stream.
            self._routes.pop(old.conn, None)
            old.channel.finish(now)
        route = self._open_route(conn, peer, request_id, now, stream=stream, prime=False)
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
            self._refuse(conn, refusal, now)
            return
        if session_id is None:
            self._refuse(conn, HttpRefusal(400, "Mcp-Session-Id is required"), now)
            return
        peer = self.sessions.remove(session_id)
        if peer is None:
            self._refuse(conn, HttpRefusal(404, "unknown or ended session"), now)
            return
        peer.close(now)
        self._respond(conn, 204, b"", None, now)

    # --- 2026-07-28 ----------------------------------------------------------------------------

    def _modern(
        self, conn: Session, method: str, headers: Headers, body: bytes, now: float
    ) -> None:
        if method != "POST":
            self._refuse(conn, _405("POST"), now)
            return
        refusal = check_post(headers, body, self.config)
        if refusal is not None:
            self._refuse(conn, refusal, now)
            return
        try:
            message = parse_message(body)
        except JsonRpcError as exc:
            self._refuse(conn, HttpRefusal(400, exc.message, exc.code), now)
            return
        version = header_values(headers, "mcp-protocol-version")[0].strip()
        if not isinstance(message, JsonRpcRequest):
            error = unsupported_version(version) if version != "2026-07-28" else None
            if error is not None:
                self._refuse(conn, HttpRefusal(400, error.message, error.code), now)
            elif isinstance(message, JsonRpcNotification):
                # No client notifications at 2026-07-28 (cancelling is closing the stream).
                self._respond(conn, 202, b"", None, now)
            else:
                self._refuse(conn, HttpRefusal(400, "a response has no request to answer"), now)
            return
        error = check_request(message, headers, self._input_schema)
        if error is not None:
            status = STATUS_OF_CODE.get(error.code, 400)
            self._respond_json(conn, encode_message(error.as_response()), now, status=status)
            return
        meta = (message.params or {})["_meta"]
        session = McpSession.ready(
            self.info,
            self.tools,
            meta[META_PROTOCOL_VERSION],
            meta[META_CLIENT_CAPABILITIES],
            self.catalog.features,
        )
        peer = McpPeer(self, session, conn.runtime, Transport.MODERN, owner=peer_host(conn.peer))
        peer.json_waiting[message.id] = conn
        self._waiting[conn] = peer
        session.receive(message)
        peer.pump(now)

    # --- legacy HTTP+SSE (2024-11-05) ------------------------------------------------------

    def _legacy_stream(self, conn: Session, headers: Headers, now: float) -> None:
        refusal = check_stream(headers)
        if refusal is not None:
            self._refuse(conn, refusal, now)
            return
        session_id = secrets.token_hex(16)
        session = McpSession(self.info, self.tools, features=self.catalog.features)
        peer = McpPeer(
            self, session, conn.runtime, Transport.LEGACY_SSE, owner=peer_host(conn.peer)
        )
        peer.session_id = session_id
        self._legacy[session_id] = peer
        conn.conn.accept_sse(now=now)
        channel = McpChannel(conn.conn, now, sse=True)
        channel.endpoint(f"/messages?session_id={session_id}", now)
        route = Route(conn, channel)
        peer.standing = route
        self._routes[conn] = (peer, route)

    def _legacy_post(
        self, conn: Session, query: str, headers: Headers, body: bytes, now: float
    ) -> None:
        session_id = (parse_qs(query).get("session_id") or [""])[0]
        peer = self._legacy.get(session_id)
        if peer is None:
            self._refuse(conn, HttpRefusal(404, "unknown session_id"), now)
            return
        if len(body) > self.config.max_body_bytes:
            self._refuse(conn, HttpRefusal(413, "the body is too large"), now)
            return
        try:
            message = parse_message(body)
        except JsonRpcError as exc:
            self._refuse(conn, HttpRefusal(400, exc.message, exc.code), now)
            return
        self._respond(conn, 202, b"Accepted", "text/plain", now)
        peer.session.receive(message)
        peer.pump(now)

    # --- WebSocket -----------------------------------------------------------------------------

    def _websocket_request(self, conn: Session, request: WebSocketRequest, now: float) -> None:
        refusal = check_access(request.headers, self.config)
        if refusal is None and urlsplit(request.target).path != "/mcp":
            refusal = HttpRefusal(404, "the MCP WebSocket is at /mcp")
        if refusal is None and SUBPROTOCOL not in request.subprotocols:
            refusal = HttpRefusal(400, f"offer the WebSocket subprotocol {SUBPROTOCOL!r}")
        if refusal is not None:
            self._refuse(conn, refusal, now)
            return
        conn.conn.accept_websocket(SUBPROTOCOL, now=now)
        self._websocket_bases[conn] = base_url(request.headers, self.config)
        session = McpSession(self.info, self.tools, features=self.catalog.features)
        peer = McpPeer(self, session, conn.runtime, Transport.WEBSOCKET, owner=peer_host(conn.peer))
        route = Route(conn, McpChannel(conn.conn, now, sse=False))
        peer.standing = route
        self._websockets[conn] = peer
        self._routes[conn] = (peer, route)

    def _websocket_message(self, conn: Session, data: bytes | str, now: float) -> None:
        peer = self._websockets.get(conn)
        if peer is None:
            return
        self._base_url = self._websocket_bases.get(conn, "")
        if isinstance(data, bytes):
            conn.conn.close(now, CLOSE_UNSUPPORTED_DATA, "MCP over WebSocket is text frames only")
            return
        try:
            message = parse_message(data)
        except JsonRpcError as exc:
            peer.session.refuse(exc.as_response())
        else:
            peer.session.receive(message)
        peer.pump(now)

    # --- calls ---------------------------------------------------------------------------------

    def open_sessions(self) -> dict[str, int]:
        """Open MCP sessions by transport (2026-07-28 requests have none)."""
        return {
            Transport.STREAMABLE.value: len(self.sessions),
            Transport.LEGACY_SSE.value: len(self._legacy),
            Transport.WEBSOCKET.value: len(self._websockets),
        }

    def _input_schema(self, name: str) -> dict[str, Any] | None:
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
            link_base=self._base_url,
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
        self._waiting.pop(conn, None)
        route = self._open_route(conn, peer, request_id, now)
        peer.routes[request_id] = route
        return route

    def _open_route(
        self,
        conn: Session,
        peer: McpPeer,
        request_id: RequestId | None,
        now: float,
        *,
        stream: str | None = None,
        prime: bool = True,
    ) -> Route:
        store = peer.store if peer.transport is Transport.STREAMABLE else None
        if store is not None and stream is None:
            stream = peer.new_stream(request_id)
        stamp = None if store is None or stream is None else partial(_stamp, store, stream)
        conn.conn.accept_sse(now=now, stamp=stamp)
        channel = McpChannel(conn.conn, now, sse=True)
        if stamp is not None and prime:
            # An id and no data: a client that loses the stream at once can still resume.
            # One retry field per stream: the connection's own opens it, when it sends one.
            own = conn.conn.config.sse_retry_ms is None
            retry = self.config.retry_ms if own else None
            conn.conn.send(CONTROL, SseEvent(data="", retry=retry), now)
        route = Route(conn, channel, request_id, stream)
        self._routes[conn] = (peer, route)
        return route

    def forget_route(self, route: Route) -> None:
        entry = self._routes.get(route.conn)
        if entry is not None and entry[1] is route:
            del self._routes[route.conn]

    # --- responses -----------------------------------------------------------------------------

    def respond_json(
        self, conn: Session, text: str, now: float, *, error_code: int | None = None
    ) -> None:
        """A request's answer as ``application/json``; with ``error_code`` (2026-07-28) the
        HTTP status of that code (404 for -32601, 400 for -32602)."""
        self._waiting.pop(conn, None)
        status = 200 if error_code is None else STATUS_OF_CODE.get(error_code, 200)
        self._respond_json(conn, text, now, status=status)

    def respond_empty(self, conn: Session, now: float) -> None:
        """A request cancelled before its answer: its POST ends without a message."""
        self._waiting.pop(conn, None)
        if conn.conn.state.value == "request_received":
            self._respond(conn, 202, b"", None, now)

    def _respond_json(
        self,
        conn: Session,
        text: str,
        now: float,
        *,
        status: int = 200,
        headers: Headers = (),
    ) -> None:
        base = (("content-type", "application/json"), ("cache-control", "no-store"))
        conn.conn.respond(status, base + tuple(headers), text.encode(), now=now)
        conn.wake()

    def _respond(
        self, conn: Session, status: int, body: bytes, content_type: str | None, now: float
    ) -> None:
        headers = (("content-type", content_type),) if content_type else ()
        conn.conn.respond(status, headers, body, now=now)
        conn.wake()

    def _refuse(self, conn: Session, refusal: HttpRefusal, now: float) -> None:
        log.info("MCP %s from %s: %s", refusal.status, conn.peer, refusal.message)
        conn.conn.respond(refusal.status, refusal.response_headers(), refusal.body(), now=now)
        conn.wake()

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
            self._refuse(conn, HttpRefusal(404, "no such clip (clips are kept briefly)"), now)
            return
        self._respond(conn, 200, wav, "audio/wav", now)

    # --- lifetimes -----------------------------------------------------------------------------

    def buffered_bytes(self) -> int:
        """Bytes held for MCP clients (queued and in the transport), all connections."""
        return sum(conn.conn.scheduler.buffered_bytes for conn in self._routes)

    def close_streams(self, now: float) -> int:
        """Close every Streamable HTTP (2025-11-25) stream; sessions and calls go on.

        The revision lets a server close a stream at any time after ``retry``: its client
        resumes with ``Last-Event-ID`` and misses nothing. For draining a server, and tests.
        Returns the number of streams closed."""
        closed = 0
        for conn, (peer, _route) in list(self._routes.items()):
            if peer.transport is Transport.STREAMABLE:
                conn.conn.close(now)
                conn.wake()
                closed += 1
        return closed

    def _closed(self, conn: Session, now: float) -> None:
        peer = self._websockets.pop(conn, None)
        self._websocket_bases.pop(conn, None)
        entry = self._routes.pop(conn, None)
        if entry is not None:
            peer, route = entry
            if peer.store is not None and route.stream is not None:
                # Never sent: recorded after what was, so the client's resume replays it.
                for payload in conn.conn.unsent:
                    if isinstance(payload, SseEvent) and payload.id is None:
                        peer.store.store(route.stream, payload.data)
            peer.route_closed(route, now)
            if peer.transport is Transport.LEGACY_SSE and peer.session_id is not None:
                self._legacy.pop(peer.session_id, None)
        elif peer is not None:
            peer.close(now)
        waiting = self._waiting.pop(conn, None)
        if waiting is not None:
            for request_id, waiting_conn in list(waiting.json_waiting.items()):
                if waiting_conn is conn:
                    del waiting.json_waiting[request_id]
            if waiting.transport is Transport.MODERN:
                waiting.close(now)

    def _schedule_expiry(self, now: float) -> None:
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
        self._schedule_expiry(now)


def _stamp(store: EventStore, stream: str, event: SseEvent) -> SseEvent:
    """Record an event as it leaves and give it its id (a replayed one keeps its own)."""
    if event.id is not None:
        return event
    return replace(event, id=store.store(stream, event.data))


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


def _405(allow: str) -> HttpRefusal:
    return HttpRefusal(405, f"method not allowed here; use {allow}", headers=(("allow", allow),))
