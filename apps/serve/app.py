"""The Dia streaming service as a runtime-neutral application (see :mod:`diaproto.runtime`).

Endpoints on one port: ``/`` and ``/static/*`` (the page, :mod:`.static_files`), ``/ws``
(diaproto.v1, :mod:`.websocket_streams`), ``/v1/stream`` (SSE: GET for EventSource, POST with
JSON, :mod:`.event_stream`), ``/v1/audio/speech`` (OpenAI's speech API, :mod:`.speech_api`),
``/metrics`` (Prometheus), ``/healthz``, and the MCP server's (:mod:`diaproto.apps.mcp`).
This module routes each event to its endpoint and holds what they share: the generations,
their listeners, and the limits on both.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

from diaproto.apps.mcp.service import McpService
from diaproto.apps.mcp.shared_sessions import SharedSessions
from diaproto.apps.serve.api_access import ApiAccess, protected
from diaproto.apps.serve.event_stream import EventStream
from diaproto.apps.serve.generation import (
    Broadcast,
    Generation,
    GenerationRegistry,
    Listener,
    new_epoch,
)
from diaproto.apps.serve.limits import GenerationRefused, ServiceLimits, refused_origin
from diaproto.apps.serve.listeners import StreamListener
from diaproto.apps.serve.metrics import CONTENT_TYPE, ServiceMetrics
from diaproto.apps.serve.mirror import MirroredGeneration
from diaproto.apps.serve.model_queue import Admission, ModelBusy
from diaproto.apps.serve.model_worker import JobQueue, ModelWorker, TakeJobs, request_json
from diaproto.apps.serve.requests import StreamRequest
from diaproto.apps.serve.responses import Responder
from diaproto.apps.serve.sources import Source
from diaproto.apps.serve.speech_api import SpeechApi
from diaproto.apps.serve.static_files import StaticFiles
from diaproto.apps.serve.websocket_streams import WebSocketStreams
from diaproto.events import (
    ConnectionClosed,
    Event,
    Headers,
    RemoteError,
    Request,
    SlowConsumer,
    SseRequest,
    StreamFinished,
    StreamPaused,
    StreamResumed,
    WebSocketRequest,
)
from diaproto.journal import History, Journal, StreamHead, Unavailable
from diaproto.mcp import McpHttpConfig
from diaproto.mcp.http import accepts, peer_host
from diaproto.runtime import Runtime, Session
from diaproto.scheduler import Policy, Priority
from diaproto.wire import CancelStream, ErrorCode, OpenStream, ResumeStream

log = logging.getLogger("diaproto.serve")

AUDIO_STREAM_LIMIT = 128 * 1024  # a stream's share: ~1.5 s of audio queued, then it pauses
RESUME_GRACE = 10.0  # seconds a generation waits, paused, for a listener that dropped


Found = Broadcast | Unavailable | None
"""What a lookup by token finds: a generation (here, or mirrored from the shared journal),
the journal's reason for not answering, or nothing."""


@dataclass(eq=False)
class ConnectionState:
    listeners: dict[int, tuple[Broadcast, Listener]] = field(default_factory=dict)
    # Streams whose resume waits for the shared journal: their ids are taken meanwhile.
    pending: set[int] = field(default_factory=set)
    mcp: bool = False  # the connection's current exchange belongs to the MCP server
    cors: Headers = ()  # what every answer to the current API request tells a browser


class DiaService:
    """The service. One instance serves every connection of one server."""

    def __init__(
        self,
        source: Source,
        *,
        resume_grace: float = RESUME_GRACE,
        mcp_config: McpHttpConfig | None = None,
        limits: ServiceLimits | None = None,
        journal: Journal | None = None,
        shared_sessions: SharedSessions | None = None,
        jobs: JobQueue | None = None,
        take_jobs: TakeJobs | None = None,
        api_keys: Sequence[str] = (),
    ) -> None:
        self.source = source
        # A shared journal (``serve --cluster``): generations are written to it, and a resume
        # of one this worker does not run is served from it.
        self.journal = journal
        # ``--queue``: a new generation is a job for a model worker, heard through the journal.
        self.jobs = jobs
        # ``diaproto worker``: this worker runs the jobs others queue (from ``started``).
        self.model_worker = ModelWorker(self, take_jobs) if take_jobs is not None else None
        if (jobs is not None or take_jobs is not None) and journal is None:
            raise ValueError("a job queue needs the shared journal the jobs are heard through")
        self.resume_grace = resume_grace
        self.limits = limits or ServiceLimits()
        # Which browser origins may use /ws and /v1/*: the MCP endpoints' hosts and origins.
        self.access = mcp_config or McpHttpConfig()
        self.api = ApiAccess(self.access, api_keys)
        self.metrics = ServiceMetrics()
        self.responder = Responder(self.metrics, self.cors_headers)
        self.model_queue = source.model_queue
        if self.model_queue is not None:
            self.metrics.watch_model_queue(self.model_queue)
        self.generations = GenerationRegistry(on_ended=self.metrics.generation_ended)
        self.mcp = McpService(self._start_mcp_generation, config=mcp_config, shared=shared_sessions)
        self.mcp.on_call = lambda tool: self.metrics.mcp_calls.labels(tool).inc()
        self.mcp.on_session_refused = lambda reason: self.metrics.mcp_sessions_refused.labels(
            reason
        ).inc()
        self._sessions: dict[Session, ConnectionState] = {}
        self.static = StaticFiles(self.responder)
        self.event_stream = EventStream(self)
        self.speech = SpeechApi(self)
        self.websocket = WebSocketStreams(self)

    # --- the Application interface ---------------------------------------------------------

    def handle_event(self, session: Session, event: Event) -> None:
        state = self._sessions.get(session)
        if state is None:
            state = self._sessions[session] = ConnectionState()
            self.metrics.connections.inc()
        if self._belongs_to_mcp(state, event):
            self.mcp.handle_event(session, event)
            if not isinstance(event, ConnectionClosed):
                self.metrics.active_generations.set(self.generations.running_workers)
                return
        if isinstance(event, Request | SseRequest | WebSocketRequest):
            state.cors = ()  # nothing of the previous request's answer carries over
            # Refused first: a page from elsewhere (403), then a call without its key (401).
            if not self._foreign_page(session, event) and not self._api_gate(session, state, event):
                self._exchange(session, event)
        else:
            self._stream_event(session, state, event)
        self.metrics.active_generations.set(self.generations.running_workers)

    def _exchange(self, session: Session, event: Request | SseRequest | WebSocketRequest) -> None:
        match event:
            case Request():
                self._request(session, event)
            case SseRequest():
                self.event_stream.handle(session, event)
            case WebSocketRequest():
                self.websocket.accept(session, event)

    def _stream_event(self, session: Session, state: ConnectionState, event: Event) -> None:
        match event:
            case OpenStream():
                self.websocket.open(session, state, event)
            case ResumeStream():
                self.websocket.resume(session, state, event)
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

    def started(self, runtime: Runtime) -> None:
        """The server listens: a model worker starts taking jobs."""
        if self.model_worker is not None:
            self.model_worker.start(runtime)

    def shutdown(self) -> None:
        if self.model_worker is not None:
            self.model_worker.close()  # its jobs left unfinished go to another worker
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
        self.responder.error(session, "origin", 403, reason)
        return True

    def cors_headers(self, session: Session) -> Headers:
        """The CORS headers of every answer to the session's current API request."""
        state = self._sessions.get(session)
        return state.cors if state is not None else ()

    def _api_gate(
        self,
        session: Session,
        state: ConnectionState,
        request: Request | SseRequest | WebSocketRequest,
    ) -> bool:
        """Answer a CORS preflight, or refuse (401) an API call without its key: True when
        the request is answered so."""
        path = urlsplit(request.target).path
        if not protected(path):
            return False  # state.cors stays () (reset for every request)
        state.cors = self.api.cors_headers(request.headers)
        if isinstance(request, Request) and request.method == "OPTIONS":
            preflight = self.api.preflight_headers(request.headers)
            if preflight is not None:  # a browser asks before its call; no key is sent
                state.cors = preflight
                self.responder.respond(session, "preflight", 200, b"", "text/plain")
                return True
        if self.api.authorized(request.headers):
            return False
        log.warning("peer %s: %s refused: no valid API key", session.peer, path)
        self.metrics.refused.labels("api_key").inc()
        self.responder.error(
            session,
            "auth",
            401,
            "a valid API key is required: 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers=(("www-authenticate", 'Bearer realm="diaproto"'),),
        )
        return True

    def _belongs_to_mcp(self, state: ConnectionState, event: Event) -> bool:
        if isinstance(event, Request | SseRequest | WebSocketRequest):
            state.mcp = McpService.serves(urlsplit(event.target).path)
        return state.mcp

    # --- plain HTTP ------------------------------------------------------------------------

    def _request(self, session: Session, request: Request) -> None:
        path = urlsplit(request.target).path
        if path in ("/", "/index.html") and request.method in ("GET", "HEAD"):
            self.static.serve(session, "index.html")
        elif path.startswith("/static/") and request.method in ("GET", "HEAD"):
            self.static.serve(session, path.removeprefix("/static/"))
        elif path in ("/healthz", "/metrics") and request.method not in ("GET", "HEAD"):
            self.responder.error(session, path[1:], 405, "use GET", allow="GET, HEAD")
        elif path == "/healthz":
            status, body = self._health()
            self.responder.respond(session, "healthz", status, body, "text/plain; charset=utf-8")
        elif path == "/metrics":
            self.metrics.active_generations.set(self.generations.running_workers)
            for transport, count in self.mcp.open_sessions().items():
                self.metrics.mcp_sessions.labels(transport).set(count)
            self.responder.respond(session, "metrics", 200, self.metrics.exposition(), CONTENT_TYPE)
        elif path == "/v1/audio/speech":
            if request.method != "POST":
                self.responder.error(session, "speech", 405, "use POST", allow="POST")
            else:
                self.speech.handle(session, request)
        elif path == "/v1/stream":
            # The answer is an SSE stream: to a POST whatever it accepts, to a GET that
            # accepts one (curl's "*/*", or no Accept at all, does).
            if (
                request.method == "POST"
                or not request.header("accept")
                or accepts(request.headers, "text/event-stream")
            ):
                self.event_stream.handle(
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
                self.responder.error(
                    session, "stream", 406, "GET /v1/stream answers 'text/event-stream' only"
                )
        elif path == "/ws":
            self.responder.error(session, "ws", 426, "this endpoint speaks WebSocket (diaproto.v1)")
        else:
            self.responder.error(session, "other", 404, f"no such endpoint: {path}")

    def _health(self) -> tuple[int, bytes]:
        """(status, body): 503 "degraded" while the shared journal is unreachable (streams
        going on continue; new ones are refused), else 200 "ok"."""
        journal = self.journal
        if journal is not None and not journal.available:
            lines = f"degraded\nthe shared journal is unreachable (worker {journal.worker})\n"
            return 503, lines.encode()
        if journal is not None:
            head = f"ok\nworker {journal.worker} of a shared journal\n"
        else:
            head = "ok\n"
        if self.model_queue is None:
            return 200, head.encode()
        stats = self.model_queue.stats()
        return 200, (
            f"{head}model {self.source.name}: {stats.running} running, {stats.waiting} waiting, "
            f"{stats.admitted} in progress (limit {stats.max_requests}), "
            f"{stats.refused} refused\n"
        ).encode()

    def admit(self) -> Admission | None:
        """The request's place with the model (None: the source has no model to share);
        raises :class:`ModelBusy` when the model has as many requests as it takes, or when
        the shared journal is unreachable (a new stream could not be resumed elsewhere)."""
        if self.journal is not None and not self.journal.available:
            self.metrics.refused.labels("journal_unavailable").inc()
            raise ModelBusy(
                "the shared journal is unreachable: no new stream until it is back; retry shortly"
            )
        return self.model_queue.admit() if self.model_queue is not None else None

    def admit_or_503(self, session: Session, endpoint: str) -> tuple[bool, Admission | None]:
        """(admitted?, the place): a full model is answered 503 before anything is sent."""
        try:
            return True, self.admit()
        except ModelBusy as exc:
            log.warning("%s refused: %s", endpoint, exc)
            self.responder.error(session, endpoint, 503, str(exc), retry_after=1)
            return False, None

    def peer_at_limit(self, session: Session, endpoint: str) -> bool:
        """Refuse (429) a new generation when the peer already has as many as it may."""
        message = self.peer_limit_message(peer_host(session.peer))
        if message is None:
            return False
        self.responder.error(
            session, endpoint, 429, message, retry_after=1, code=ErrorCode.LIMIT_EXCEEDED
        )
        return True

    def peer_limit_message(self, host: str) -> str | None:
        """Why ``host`` may not start another generation, or None (and the refusal counted)."""
        limit = self.limits.max_generations_per_peer
        if self.generations.owned_by(host) < limit:
            return None
        log.warning("peer %s refused: %d generations already (the limit)", host, limit)
        self.metrics.refused.labels("generations_per_peer").inc()
        return f"{host} already has {limit} generations in progress (the limit); retry later"

    # --- generations and listeners ---------------------------------------------------------

    def start_generation(
        self,
        session: Session,
        token: str,
        request: StreamRequest,
        admission: Admission | None,
        *,
        epoch: str | None = None,
        credit_based: bool = False,
    ) -> Broadcast:
        """A generation of ``request`` for ``session``'s first listener (``credit_based``:
        that listener grants credit, see :attr:`Broadcast.credit_based`)."""
        if self.jobs is not None:
            return self._queue_job(
                session, token, request, admission, epoch or new_epoch(), credit_based=credit_based
            )
        generation = Generation(
            token,
            request,
            self.source,
            session.runtime,
            self._idle,
            admission=admission,
            owner=peer_host(session.peer),
            # The one its first listener's event ids already carry, if any.
            epoch=new_epoch() if epoch is None else epoch,
            journal=self.journal,
            credit_based=credit_based,
        )
        self.generations.add(generation)
        generation.start()
        return generation

    def _queue_job(
        self,
        session: Session,
        token: str,
        request: StreamRequest,
        admission: Admission | None,
        epoch: str,
        *,
        credit_based: bool,
    ) -> Broadcast:
        """A job for a model worker, and the mirror its listeners hear it through."""
        assert self.jobs is not None and self.journal is not None
        if admission is not None:
            admission.close()  # the model is the model worker's to share, not this one's
        self.jobs.submit(token, epoch, request_json(request, credit_based=credit_based))
        queued = History(StreamHead(epoch, "", credit_based), ())
        mirror = MirroredGeneration.from_history(
            token, queued, session.runtime, self.journal, self._idle, grace=self.resume_grace
        )
        mirror.owner = peer_host(session.peer)  # counted against its peer's limit
        self.generations.add_mirror(mirror)
        return mirror

    def _start_mcp_generation(
        self, runtime: Runtime, request: StreamRequest, owner: str
    ) -> Generation:
        refused = self.peer_limit_message(owner) if owner else None
        if refused is not None:
            raise GenerationRefused(refused)
        generation = Generation(
            secrets.token_urlsafe(12), request, self.source, runtime, self._idle, owner=owner
        )
        self.generations.add(generation)
        generation.start()
        return generation

    def find(
        self, session: Session, token: str, then: Callable[[Found], None], *, reach: int = 0
    ) -> None:
        """The generation ``token`` names, to ``then``: this worker's own, else (with a
        journal) a mirror of one another worker runs, read on the journal's thread and
        handed over on the loop. A mirror is given up to its ``REACH_TIMEOUT`` for the
        record ``reach`` to arrive (the owner writes each within milliseconds, so a client
        may have heard a record the journal has not delivered here yet). Nothing is called
        if the connection closed meanwhile."""
        found = self.generations.get(token)
        if found is not None or self.journal is None:
            self._reach(session, found, reach, then)
            return
        runtime = session.runtime

        def reply(history: History | Unavailable | None) -> None:
            runtime.call_soon_threadsafe(partial(self._read, session, token, history, reach, then))

        self.journal.read(token, reply)

    def _read(
        self,
        session: Session,
        token: str,
        history: History | Unavailable | None,
        reach: int,
        then: Callable[[Found], None],
    ) -> None:
        if session not in self._sessions:
            return  # the connection closed while the journal answered
        found: Found = self.generations.get(token)  # a mirror made meanwhile
        if found is None and isinstance(history, History):
            assert self.journal is not None
            mirror = MirroredGeneration.from_history(
                token, history, session.runtime, self.journal, self._idle, grace=self.resume_grace
            )
            self.generations.add_mirror(mirror)
            if mirror.finished:
                self._idle(mirror)  # kept with the finished ones (bounded), not as live
            found = mirror
        elif found is None and isinstance(history, Unavailable):
            found = history  # why the journal did not answer
        self._reach(session, found, reach, then)
        session.wake()

    def _reach(
        self, session: Session, found: Found, reach: int, then: Callable[[Found], None]
    ) -> None:
        if isinstance(found, MirroredGeneration) and reach > found.replay.last_seq:

            def reached(arrived: bool) -> None:
                if session not in self._sessions:
                    return
                if arrived or found.finished:
                    then(found)  # a finished stream says itself what it had
                else:  # not here yet: retryable, not the client's mistake
                    then(Unavailable(f"record {reach} has not reached this worker yet"))
                session.wake()

            found.when_reached(reach, reached)
        else:
            then(found)

    def attach(
        self,
        session: Session,
        generation: Broadcast,
        listener: StreamListener,
        *,
        after: int | None,
        credit: int | None,
        pace: float | None = None,
        lead: int | None = None,
        burst: int | None = None,
    ) -> None:
        """Open ``listener``'s stream on the session's connection and attach it to
        ``generation``, from record ``after + 1`` (None: from the start); ``credit``,
        ``pace``, ``lead`` and ``burst`` as :class:`~diaproto.scheduler.StreamOptions` says."""
        conn, now = session.conn, session.runtime.now()
        conn.open_stream(
            listener.stream_id,
            now,
            priority=Priority.STREAM,
            policy=Policy.PAUSE,
            limit=AUDIO_STREAM_LIMIT,
            credit=credit,
            pace=pace,
            lead=lead,
            burst=burst,
            replay=generation.replay,
            record=False,
            token=generation.token,
        )
        self._sessions.setdefault(session, ConnectionState()).listeners[listener.stream_id] = (
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

    def _detach(self, state: ConnectionState, stream_id: int, *, cancelled: bool) -> None:
        entry = state.listeners.pop(stream_id, None)
        if entry is None:
            return  # already detached (a cancel is followed by the stream's StreamFinished)
        generation, listener = entry
        self.metrics.active_streams.dec()
        generation.detach(listener, cancelled=cancelled, grace=self.resume_grace)

    def _idle(self, generation: Broadcast) -> None:
        self.generations.retire(generation)
