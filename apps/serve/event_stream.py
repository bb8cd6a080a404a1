"""``/v1/stream``: the audio as Server-Sent Events, for ``EventSource`` (GET) or a POST of JSON.

A GET with an ``id`` parameter names its stream: a second listener with the same id and
request hears the same generation, and a reconnect with ``Last-Event-ID`` continues it after
the last event it had (never restarted as if it were, when that cannot be done).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from diaproto.apps.serve.generation import Generation
from diaproto.apps.serve.listeners import StreamListener
from diaproto.apps.serve.requests import (
    BadRequest,
    StreamRequest,
    parse_stream_json,
    parse_stream_query,
)
from diaproto.events import SseRequest
from diaproto.runtime import Session
from diaproto.wire import ErrorCode

if TYPE_CHECKING:
    from diaproto.apps.serve.app import DiaService

SSE_STREAM_ID = 1
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() takes "²"


class EventStream:
    """Answers each request to ``/v1/stream`` with its generation's events."""

    def __init__(self, service: DiaService) -> None:
        self.service = service
        self.responder = service.responder

    def handle(self, session: Session, request: SseRequest) -> None:
        path = urlsplit(request.target).path
        if path != "/v1/stream":
            self.responder.error(session, "other", 404, f"no event stream at {path}")
            return
        try:
            if request.method == "POST":
                parsed = parse_stream_json(request.body)
                resume_id = None
            elif request.method == "GET":
                parsed = parse_stream_query(request.target)
                resume_id = _query_value(request.target, "id")
            else:
                self.responder.error(session, "stream", 405, "use GET or POST", allow="GET, POST")
                return
            after = _last_event_seq(request.last_event_id)
        except BadRequest as exc:
            self.responder.error(session, "stream", 400, str(exc))
            return
        service = self.service
        generation = None
        if after is not None:
            # A reconnect: it continues the stream it names, or is told why it cannot.
            generation = self._resumable(session, resume_id, parsed, after)
            if generation is None:
                return
        token = _resume_token(resume_id, parsed) if resume_id else secrets.token_urlsafe(12)
        if generation is None and resume_id:
            generation = service.generations.get(token)  # a second listener to a live stream
        admission = None
        if generation is None:
            if service.peer_at_limit(session, "stream"):
                return
            admitted, admission = service.admit_or_503(session, "stream")
            if not admitted:
                return
        conn, now = session.conn, session.runtime.now()
        conn.accept_sse(now=now)
        service.metrics.requests.labels("stream", "200").inc()
        listener = StreamListener(session, SSE_STREAM_ID, ends_response=True)
        if generation is None:
            generation = service.start_generation(session, token, parsed, admission)
        # A resumed stream continues after Last-Event-ID; a new listener hears it all.
        service.attach(session, generation, listener, after=after or 0, credit=None)

    def _resumable(
        self, session: Session, resume_id: str | None, parsed: StreamRequest, after: int
    ) -> Generation | None:
        """The generation a ``Last-Event-ID`` reconnect continues, or None after refusing
        it: a stream that cannot be continued is never restarted as if it were."""
        generations = self.service.generations
        generation = generations.get(_resume_token(resume_id, parsed)) if resume_id else None
        if generation is None:
            why = (
                "no stream to resume: it had no 'id' parameter"
                if not resume_id
                else "no stream with this id and request to resume (unknown, or expired)"
            )
            self.responder.error(
                session,
                "stream",
                404,
                f"{why}; start a new one without Last-Event-ID",
                code=ErrorCode.UNKNOWN_STREAM,
            )
            return None
        if after > generation.replay.last_seq:
            self.responder.error(
                session,
                "stream",
                400,
                f"Last-Event-ID {after} is past the last event sent ({generation.replay.last_seq})",
                code=ErrorCode.INVALID_REQUEST,
            )
            return None
        return generation


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
