"""The Dia streaming service as a runtime-neutral application (see :mod:`diaproto.runtime`).

Endpoints on one port: ``/`` and ``/static/*`` (the page), ``/ws`` (diaproto.v1),
``/v1/stream`` (SSE: GET for EventSource, POST with JSON), ``/v1/audio/speech`` (OpenAI's
speech API), ``/metrics`` (Prometheus), ``/healthz``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from diaproto.apps.mcp.service import McpService
from diaproto.apps.serve.audio import wav_header
from diaproto.apps.serve.generation import Generation, GenerationRegistry, Listener
from diaproto.apps.serve.limits import (
    GenerationRefused,
    ServiceLimits,
    peer_host,
    refused_origin,
)
from diaproto.apps.serve.listeners import (
    SpeechBodyListener,
    SpeechSseListener,
    StreamListener,
)
from diaproto.apps.serve.metrics import CONTENT_TYPE, ServiceMetrics
from diaproto.apps.serve.model_queue import Admission, ModelBusy
from diaproto.apps.serve.requests import (
    BadRequest,
    StreamRequest,
    parse_speech_request,
    parse_stream_json,
    parse_stream_options,
    parse_stream_query,
)
from diaproto.apps.serve.sources import Source

from diaproto.events import (
    ConnectionClosed,
    Event,
    RemoteError,
    Request,
    SlowConsumer,
    SseRequest,
    StreamFinished,
    StreamPaused,
    StreamResumed,
    WebSocketRequest,
)
from diaproto.mcp import McpHttpConfig
from diaproto.mcp.http import accepts
from diaproto.runtime import Runtime, Session
from diaproto.scheduler import Policy, Priority
from diaproto.wire import SUBPROTOCOL, CancelStream, ErrorCode, OpenStream, ResumeStream

log = logging.getLogger("diaproto.serve")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
# The page's client is the JavaScript client of clients/js: a wheel carries it in client/
# (see pyproject.toml), a source checkout has it in place.
CLIENT_JS = next(
    (
        path
        for path in (
            HERE / "client" / "diaproto.js",
            HERE.parents[1] / "clients/js/src/diaproto.js",
        )
        if path.is_file()
    ),
    None,
)
STATIC_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(?:html|js|css|svg|json)$")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "json": "application/json",
}
AUDIO_STREAM_LIMIT = 128 * 1024  # a stream's share: ~1.5 s of audio queued, then it pauses
RESUME_GRACE = 10.0  # seconds a generation waits, paused, for a listener that dropped
SSE_STREAM_ID = 1
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() takes "²"


@dataclass(eq=False)
class _SessionState:
    listeners: dict[int, tuple[Generation, Listener]] = field(default_factory=dict)
    mcp: bool = False  # the connection's current exchange belongs to the MCP server


class DiaService:
    """The service. One instance serves every connection of one server."""

    def __init__(
        self,
        source: Source,
        *,
        resume_grace: float = RESUME_GRACE,
        mcp_config: McpHttpConfig | None = None,
        limits: ServiceLimits | None = None,
    ) -> None:
        self.source = source
        self.resume_grace = resume_grace
        self.limits = limits or ServiceLimits()
        # Which browser origins may use /ws and /v1/*: the MCP endpoints' hosts and origins.
        self.access = mcp_config or McpHttpConfig()
        self.metrics = ServiceMetrics()
        self.model_queue = source.model_queue
        if self.model_queue is not None:
            self.metrics.watch_model_queue(self.model_queue)
        self.generations = GenerationRegistry()
        self.mcp = McpService(self._start_mcp_generation, config=mcp_config)
        self.mcp.on_call = lambda tool: self.metrics.mcp_calls.labels(tool).inc()
        self.mcp.on_session_refused = lambda reason: self.metrics.mcp_sessions_refused.labels(
            reason
        ).inc()
        self._sessions: dict[Session, _SessionState] = {}
        self._static = (
            {
                path.name: path.read_bytes()
                for path in sorted(STATIC.iterdir())
                if STATIC_NAME.match(path.name) and path.is_file()
            }
            if STATIC.is_dir()
            else {}
        )
        if CLIENT_JS is not None:
            self._static[CLIENT_JS.name] = CLIENT_JS.read_bytes()

    # --- the Application interface ---------------------------------------------------------

    def handle_event(self, session: Session, event: Event) -> None:
        state = self._sessions.get(session)
        if state is None:
            state = self._sessions[session] = _SessionState()
            self.metrics.connections.inc()
        if self._belongs_to_mcp(state, event):
            self.mcp.handle_event(session, event)
            if not isinstance(event, ConnectionClosed):
                self.metrics.active_generations.set(self.generations.running_workers)
                return
        match event:
            case Request() | SseRequest() | WebSocketRequest() if self._foreign_page(
                session, event
            ):
                pass  # refused: a web page from elsewhere
            case Request():
                self._request(session, event)
            case SseRequest():
                self._sse_request(session, event)
            case WebSocketRequest():
                self._websocket_request(session, event)
            case OpenStream():
                self._open_wire_stream(session, state, event)
            case ResumeStream():
                self._resume_wire_stream(session, state, event)
            case CancelStream():
                self._detach(state, event.stream_id, cancelled=True)
            case StreamPaused() | StreamResumed():
                entry = state.listeners.get(event.stream_id)
                if entry is not None:
                    generation, listener = entry
                    listener.paused = isinstance(event, StreamPaused)
                    generation.update_gate()
            case StreamFinished():
                # Ended, cancelled, or dropped with its connection: detach whatever is left.
                self.metrics.stream_finished(event.metrics)
                self._detach(state, event.stream_id, cancelled=False)
            case SlowConsumer():
                self.metrics.disconnects.labels("slow_consumer").inc()
            case RemoteError():
                log.info("peer %s: %s", session.peer, event.error.message)
                if event.fatal:
                    self.metrics.disconnects.labels("protocol_error").inc()
            case ConnectionClosed():
                # The core reported every stream's end before this (its last event).
                for stream_id in list(state.listeners):
                    self._detach(state, stream_id, cancelled=False)
                del self._sessions[session]
                self.metrics.connections.dec()
        self.metrics.active_generations.set(self.generations.running_workers)

    def shutdown(self) -> None:
        self.mcp.shutdown()
        self.generations.stop_all()

    def _foreign_page(
        self, session: Session, request: Request | SseRequest | WebSocketRequest
    ) -> bool:
        """Refuse (403) a browser request to the API from a page this server did not serve."""
        path = urlsplit(request.target).path
        if not (path == "/ws" or path.startswith("/v1/")):
            return False
        reason = refused_origin(request.headers, self.access)
        if reason is None:
            return False
        log.warning("peer %s: %s refused: %s", session.peer, path, reason)
        self.metrics.refused.labels("origin").inc()
        self._error(session, "origin", 403, reason)
        return True

    def _belongs_to_mcp(self, state: _SessionState, event: Event) -> bool:
        if isinstance(event, Request | SseRequest | WebSocketRequest):
            state.mcp = McpService.serves(urlsplit(event.target).path)
        return state.mcp

    # --- plain HTTP ------------------------------------------------------------------------

    def _request(self, session: Session, request: Request) -> None:
        path = urlsplit(request.target).path
        if path in ("/", "/index.html") and request.method in ("GET", "HEAD"):
            self._static_file(session, "index.html", request)
        elif path.startswith("/static/") and request.method in ("GET", "HEAD"):
            self._static_file(session, path.removeprefix("/static/"), request)
        elif path in ("/healthz", "/metrics") and request.method not in ("GET", "HEAD"):
            self._error(session, path[1:], 405, "use GET", allow="GET, HEAD")
        elif path == "/healthz":
            self._respond(session, "healthz", 200, self._health(), "text/plain; charset=utf-8")
        elif path == "/metrics":
            self.metrics.active_generations.set(self.generations.running_workers)
            for transport, count in self.mcp.open_sessions().items():
                self.metrics.mcp_sessions.labels(transport).set(count)
            self._respond(session, "metrics", 200, self.metrics.exposition(), CONTENT_TYPE)
        elif path == "/v1/audio/speech":
            if request.method != "POST":
                self._error(session, "speech", 405, "use POST", allow="POST")
            else:
                self._speech(session, request)
        elif path == "/v1/stream":
            # The answer is an SSE stream: to a POST whatever it accepts, to a GET that
            # accepts one (curl's "*/*", or no Accept at all, does).
            if (
                request.method == "POST"
                or not request.header("accept")
                or accepts(request.headers, "text/event-stream")
            ):
                self._sse_request(
                    session,
                    SseRequest(
                        request.method,
                        request.target,
                        request.headers,
                        request.body,
                        last_event_id=request.header("last-event-id"),
                    ),
                )
            else:
                self._error(
                    session, "stream", 406, "GET /v1/stream answers 'text/event-stream' only"
                )
        elif path == "/ws":
            self._error(session, "ws", 426, "this endpoint speaks WebSocket (diaproto.v1)")
        else:
            self._error(session, "other", 404, f"no such endpoint: {path}")

    def _health(self) -> bytes:
        if self.model_queue is None:
            return b"ok\n"
        stats = self.model_queue.stats()
        return (
            f"ok\nmodel {self.source.name}: {stats.running} running, {stats.waiting} waiting, "
            f"{stats.admitted} in progress (limit {stats.max_requests}), "
            f"{stats.refused} refused\n"
        ).encode()

    def _admit(self) -> Admission | None:
        """The request's place with the model (None: the source has no model to share);
        raises :class:`ModelBusy` when the model has as many requests as it takes."""
        return self.model_queue.admit() if self.model_queue is not None else None

    def _admit_or_503(self, session: Session, endpoint: str) -> tuple[bool, Admission | None]:
        """(admitted?, the place): a full model is answered 503 before anything is sent."""
        try:
            return True, self._admit()
        except ModelBusy as exc:
            log.warning("%s refused: %s", endpoint, exc)
            self._error(session, endpoint, 503, str(exc), retry_after=1)
            return False, None

    def _peer_at_limit(self, session: Session, endpoint: str) -> bool:
        """Refuse (429) a new generation when the peer already has as many as it may."""
        message = self._peer_limit_message(peer_host(session.peer))
        if message is None:
            return False
        self._error(session, endpoint, 429, message, retry_after=1, code=ErrorCode.LIMIT_EXCEEDED)
        return True

    def _peer_limit_message(self, host: str) -> str | None:
        """Why ``host`` may not start another generation, or None (and the refusal counted)."""
        limit = self.limits.max_generations_per_peer
        if self.generations.owned_by(host) < limit:
            return None
        log.warning("peer %s refused: %d generations already (the limit)", host, limit)
        self.metrics.refused.labels("generations_per_peer").inc()
        return f"{host} already has {limit} generations in progress (the limit); retry later"

    def _static_file(self, session: Session, name: str, request: Request) -> None:
        body = self._static.get(name)
        if body is None:
            self._error(session, "static", 404, f"no such file: {name}")
            return
        content_type = CONTENT_TYPES[name.rsplit(".", 1)[1]]
        self._respond(session, "static", 200, body, content_type, cache="no-cache")

    def _respond(
        self,
        session: Session,
        endpoint: str,
        status: int,
        body: bytes,
        content_type: str,
        *,
        cache: str = "no-store",
        allow: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        headers = [("content-type", content_type), ("cache-control", cache)]
        if allow is not None:
            headers.append(("allow", allow))
        if retry_after is not None:
            headers.append(("retry-after", str(retry_after)))
        session.conn.respond(status, tuple(headers), body, now=session.runtime.now())
        self.metrics.requests.labels(endpoint, str(status)).inc()

    def _error(
        self,
        session: Session,
        endpoint: str,
        status: int,
        message: str,
        *,
        allow: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
        code: str | None = None,
    ) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": param,
                    "code": code,
                }
            }
        ).encode()
        self._respond(
            session,
            endpoint,
            status,
            body,
            "application/json",
            allow=allow,
            retry_after=retry_after,
        )

    # --- SSE -------------------------------------------------------------------------------

    def _sse_request(self, session: Session, request: SseRequest) -> None:
        path = urlsplit(request.target).path
        if path != "/v1/stream":
            self._error(session, "other", 404, f"no event stream at {path}")
            return
        try:
            if request.method == "POST":
                parsed = parse_stream_json(request.body)
                resume_id = None
            elif request.method == "GET":
                parsed = parse_stream_query(request.target)
                resume_id = _query_value(request.target, "id")
            else:
                self._error(session, "stream", 405, "use GET or POST", allow="GET, POST")
                return
            after = _last_event_seq(request.last_event_id)
        except BadRequest as exc:
            self._error(session, "stream", 400, str(exc))
            return
        generation = None
        if after is not None:
            # A reconnect: it continues the stream it names, or is told why it cannot.
            generation = self._sse_resumable(session, resume_id, parsed, after)
            if generation is None:
                return
        token = _resume_token(resume_id, parsed) if resume_id else secrets.token_urlsafe(12)
        if generation is None and resume_id:
            generation = self.generations.get(token)  # a second listener to a live stream
        admission = None
        if generation is None:
            if self._peer_at_limit(session, "stream"):
                return
            admitted, admission = self._admit_or_503(session, "stream")
            if not admitted:
                return
        conn, now = session.conn, session.runtime.now()
        conn.accept_sse(now=now)
        self.metrics.requests.labels("stream", "200").inc()
        listener = StreamListener(session, SSE_STREAM_ID, ends_response=True)
        if generation is None:
            generation = self._start_generation(session, token, parsed, admission)
        # A resumed stream continues after Last-Event-ID; a new listener hears it all.
        self._attach(session, generation, listener, after=after or 0, credit=None)

    def _sse_resumable(
        self, session: Session, resume_id: str | None, parsed: StreamRequest, after: int
    ) -> Generation | None:
        """The generation a ``Last-Event-ID`` reconnect continues, or None after refusing
        it: a stream that cannot be continued is never restarted as if it were."""
        generation = self.generations.get(_resume_token(resume_id, parsed)) if resume_id else None
        if generation is None:
            why = (
                "no stream to resume: it had no 'id' parameter"
                if not resume_id
                else "no stream with this id and request to resume (unknown, or expired)"
            )
            self._error(
                session,
                "stream",
                404,
                f"{why}; start a new one without Last-Event-ID",
                code=ErrorCode.UNKNOWN_STREAM,
            )
            return None
        if after > generation.replay.last_seq:
            self._error(
                session,
                "stream",
                400,
                f"Last-Event-ID {after} is past the last event sent ({generation.replay.last_seq})",
                code=ErrorCode.INVALID_REQUEST,
            )
            return None
        return generation

    # --- WebSocket -------------------------------------------------------------------------

    def _websocket_request(self, session: Session, request: WebSocketRequest) -> None:
        path = urlsplit(request.target).path
        if path != "/ws":
            self._error(session, "ws", 404, f"no WebSocket endpoint at {path}")
        elif SUBPROTOCOL not in request.subprotocols:
            self._error(session, "ws", 400, f"offer the subprotocol {SUBPROTOCOL!r}")
        else:
            session.conn.accept_websocket(SUBPROTOCOL, now=session.runtime.now())
            self.metrics.requests.labels("ws", "101").inc()

    def _open_wire_stream(self, session: Session, state: _SessionState, event: OpenStream) -> None:
        conn, now = session.conn, session.runtime.now()
        if event.stream_id in state.listeners or conn.scheduler.has_stream(event.stream_id):
            conn.fail_stream(
                None, ErrorCode.STREAM_EXISTS, f"stream {event.stream_id} is already open", now
            )
            return
        try:
            parsed = parse_stream_options(event.text, event.voice, event.options)
        except BadRequest as exc:
            conn.fail_stream(event.stream_id, ErrorCode.INVALID_REQUEST, str(exc), now)
            return
        limited = self._stream_limit_message(session, state) or self._peer_limit_message(
            peer_host(session.peer)
        )
        if limited is not None:
            conn.fail_stream(event.stream_id, ErrorCode.LIMIT_EXCEEDED, limited, now)
            return
        try:
            admission = self._admit()
        except ModelBusy as exc:
            log.warning("ws refused: %s", exc)
            conn.fail_stream(event.stream_id, ErrorCode.BUSY, str(exc), now)
            return
        generation = self._start_generation(session, secrets.token_urlsafe(12), parsed, admission)
        listener = StreamListener(session, event.stream_id)
        self._attach(session, generation, listener, after=None, credit=event.credit)

    def _stream_limit_message(self, session: Session, state: _SessionState) -> str | None:
        limit = self.limits.max_streams_per_connection
        if len(state.listeners) < limit:
            return None
        log.warning("peer %s refused: %d streams open on its connection", session.peer, limit)
        self.metrics.refused.labels("streams_per_connection").inc()
        return f"this connection already has {limit} streams open (the limit)"

    def _resume_wire_stream(
        self, session: Session, state: _SessionState, event: ResumeStream
    ) -> None:
        conn, now = session.conn, session.runtime.now()
        generation = self.generations.get(event.token) if event.token else None
        if generation is None:
            conn.fail_stream(
                event.stream_id,
                ErrorCode.UNKNOWN_STREAM,
                "no generation with that resume token",
                now,
            )
            return
        if event.stream_id in state.listeners or conn.scheduler.has_stream(event.stream_id):
            conn.fail_stream(
                None, ErrorCode.STREAM_EXISTS, f"stream {event.stream_id} is already open", now
            )
            return
        if event.after > generation.replay.last_seq:
            # The client claims records never sent: continuing would look seamless and not be.
            message = (
                f"after={event.after} is past the last record sent ({generation.replay.last_seq})"
            )
            conn.fail_stream(event.stream_id, ErrorCode.INVALID_REQUEST, message, now)
            return
        limited = self._stream_limit_message(session, state)
        if limited is not None:
            conn.fail_stream(event.stream_id, ErrorCode.LIMIT_EXCEEDED, limited, now)
            return
        listener = StreamListener(session, event.stream_id)
        self._attach(session, generation, listener, after=event.after, credit=None)

    # --- OpenAI speech ---------------------------------------------------------------------

    def _speech(self, session: Session, request: Request) -> None:
        try:
            speech = parse_speech_request(request.body)
        except BadRequest as exc:
            self._error(session, "speech", 400, str(exc), param=getattr(exc, "param", None))
            return
        if self._peer_at_limit(session, "speech"):
            return
        admitted, admission = self._admit_or_503(session, "speech")
        if not admitted:
            return
        conn, now = session.conn, session.runtime.now()
        parsed = StreamRequest(speech.input, speech.voice, speech.speed)
        listener: StreamListener
        if speech.stream_format == "sse":
            conn.accept_sse(now=now)
            listener = SpeechSseListener(session, SSE_STREAM_ID, input_chars=len(speech.input))
        else:
            media = "audio/wav" if speech.response_format == "wav" else "audio/pcm"
            conn.start_response(
                200, (("content-type", media), ("cache-control", "no-store")), now=now
            )
            listener = SpeechBodyListener(session, SSE_STREAM_ID)
        self.metrics.requests.labels("speech", "200").inc()
        generation = self._start_generation(session, secrets.token_urlsafe(12), parsed, admission)
        self._attach(session, generation, listener, after=None, credit=None)
        if speech.stream_format != "sse" and speech.response_format == "wav":
            conn.send(SSE_STREAM_ID, wav_header(), now)

    # --- generations and listeners ---------------------------------------------------------

    def _start_generation(
        self,
        session: Session,
        token: str,
        request: StreamRequest,
        admission: Admission | None,
    ) -> Generation:
        generation = Generation(
            token,
            request,
            self.source,
            session.runtime,
            self._idle,
            admission=admission,
            owner=peer_host(session.peer),
        )
        self.generations.add(generation)
        generation.start()
        return generation

    def _start_mcp_generation(
        self, runtime: Runtime, request: StreamRequest, owner: str
    ) -> Generation:
        refused = self._peer_limit_message(owner) if owner else None
        if refused is not None:
            raise GenerationRefused(refused)
        generation = Generation(
            secrets.token_urlsafe(12), request, self.source, runtime, self._idle, owner=owner
        )
        self.generations.add(generation)
        generation.start()
        return generation

    def _attach(
        self,
        session: Session,
        generation: Generation,
        listener: StreamListener,
        *,
        after: int | None,
        credit: int | None,
    ) -> None:
        conn, now = session.conn, session.runtime.now()
        conn.open_stream(
            listener.stream_id,
            now,
            priority=Priority.STREAM,
            policy=Policy.PAUSE,
            limit=AUDIO_STREAM_LIMIT,
            credit=credit,
            replay=generation.replay,
            record=False,
            token=generation.token,
        )
        self._sessions.setdefault(session, _SessionState()).listeners[listener.stream_id] = (
            generation,
            listener,
        )
        self.metrics.active_streams.inc()
        if after is not None and not conn.resume_stream(listener.stream_id, after, now):
            return  # a replay gap: the stream failed with replay_gap
        if generation.failed is not None:
            listener.fail(generation.failed, now, generation.failed_code)
        elif generation.finished:
            listener.end(now)
        else:
            generation.attach(listener)

    def _detach(self, state: _SessionState, stream_id: int, *, cancelled: bool) -> None:
        entry = state.listeners.pop(stream_id, None)
        if entry is None:
            return  # already detached (a cancel is followed by the stream's StreamFinished)
        generation, listener = entry
        self.metrics.active_streams.dec()
        generation.detach(listener, cancelled=cancelled, grace=self.resume_grace)

    def _idle(self, generation: Generation) -> None:
        self.generations.retire(generation)


def _query_value(target: str, name: str) -> str | None:
    values = parse_qs(urlsplit(target).query).get(name)
    return values[0] if values else None


def _last_event_seq(last_event_id: str | None) -> int | None:
    """The sequence number a ``Last-Event-ID`` names (our ids are decimal record numbers)."""
    if last_event_id is None:
        return None
    if not LAST_EVENT_ID.fullmatch(last_event_id):
        shown = last_event_id if len(last_event_id) <= 40 else f"{last_event_id[:40]}..."
        raise BadRequest(f"Last-Event-ID {shown!r} is not an event id of this server")
    return int(last_event_id)


def _resume_token(resume_id: str, request: StreamRequest) -> str:
    """A client-chosen id names a generation only together with its request, so two
    clients that pick the same id never share (or replay) each other's audio."""
    digest = hashlib.sha256(
        json.dumps([resume_id, request.text, request.voice, request.speed]).encode()
    ).hexdigest()
    return digest[:32]
