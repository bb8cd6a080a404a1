"""``/v1/stream``: the audio as Server-Sent Events, for ``EventSource`` (GET) or a POST of JSON.

A GET with an ``id`` parameter names its stream: a second listener with the same id and
request hears the same generation, and a reconnect with ``Last-Event-ID`` continues it after
the last event it had (never restarted as if it were, when that cannot be done).

Event ids are ``<epoch>.<seq>``: the generation's epoch (random, made with it) and the
record's sequence number. The same id and request name a new generation once the earlier
one has expired; the epoch tells a reconnect from the earlier one apart, so it is refused
with ``replay_gap`` instead of continuing audio it never had the start of.

An SSE client cannot grant credit, so the server paces the stream by the clock: at the
audio's real-time rate, at most ``--sse-lead`` seconds ahead (``ServiceLimits.sse_lead``),
so a fast model never floods a client that plays as it receives.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from diaproto.apps.serve.audio import BYTES_PER_SECOND
from diaproto.apps.serve.generation import Broadcast, new_epoch
from diaproto.apps.serve.listeners import StreamListener
from diaproto.apps.serve.requests import (
    BadRequest,
    StreamRequest,
    parse_stream_json,
    parse_stream_query,
)
from diaproto.events import SseRequest
from diaproto.journal import Unavailable
from diaproto.runtime import Session
from diaproto.wire import ErrorCode

if TYPE_CHECKING:
    from diaproto.apps.serve.app import DiaService, Found

SSE_STREAM_ID = 1
#: ``<epoch>.<seq>``, ASCII only (str.isdigit() takes "²").
LAST_EVENT_ID = re.compile(r"([0-9a-f]{8})\.([0-9]{1,18})")


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
            position = _last_event_position(request.last_event_id)
        except BadRequest as exc:
            self.responder.error(session, "stream", 400, str(exc))
            return
        if resume_id is None:
            if position is not None:
                self._unknown(session, "no stream to resume: it had no 'id' parameter")
            else:
                self._listen(session, secrets.token_urlsafe(12), parsed, None)
            return
        token = _resume_token(resume_id, parsed)
        if position is None:  # a listener to the stream this id names, live or new
            self.service.find(session, token, partial(self._listen, session, token, parsed))
            return
        # A reconnect: it continues the stream it names, or is told why it cannot.
        then = partial(self._resume, session, token, parsed, position)
        self.service.find(session, token, then, reach=position[1])

    def _resume(
        self,
        session: Session,
        token: str,
        parsed: StreamRequest,
        position: tuple[str, int],
        found: Found,
    ) -> None:
        epoch, after = position
        generation = self._resumable(session, found, epoch, after)
        if generation is not None:
            self._listen(session, token, parsed, generation, after=after)

    def _listen(
        self,
        session: Session,
        token: str,
        parsed: StreamRequest,
        found: Found,
        *,
        after: int = 0,
    ) -> None:
        """Answer with the events of ``found``, or of a new generation when there is none."""
        service = self.service
        if isinstance(found, Unavailable):
            self._unavailable(session, found)
            return
        generation = found
        admission = None
        if generation is None:
            if service.peer_at_limit(session, "stream"):
                return
            admitted, admission = service.admit_or_503(session, "stream")
            if not admitted:
                return
        conn, now = session.conn, session.runtime.now()
        epoch = new_epoch() if generation is None else generation.epoch
        conn.accept_sse(service.cors_headers(session), now=now, id_prefix=f"{epoch}.")
        service.metrics.requests.labels("stream", "200").inc()
        listener = StreamListener(session, SSE_STREAM_ID, ends_response=True)
        if generation is None:
            generation = service.start_generation(session, token, parsed, admission, epoch=epoch)
        # A resumed stream continues after Last-Event-ID; a new listener hears it all. Its
        # client cannot grant credit: the clock does, at the audio's pace, a lead ahead.
        lead = round(service.limits.sse_lead * BYTES_PER_SECOND) or None
        pace = BYTES_PER_SECOND if lead else None
        service.attach(
            session, generation, listener, after=after, credit=None, pace=pace, lead=lead
        )

    def _resumable(
        self, session: Session, found: Found, epoch: str, after: int
    ) -> Broadcast | None:
        """The generation a ``Last-Event-ID`` reconnect continues, or None after refusing
        it: a stream that cannot be continued is never restarted as if it were."""
        if isinstance(found, Unavailable):
            self._unavailable(session, found)
            return None
        if found is None:
            self._unknown(
                session, "no stream with this id and request to resume (unknown, or expired)"
            )
            return None
        generation = found
        if epoch != generation.epoch:
            self.responder.error(
                session,
                "stream",
                410,
                f"Last-Event-ID {epoch}.{after} belongs to an earlier stream with this id and "
                f"request, which has expired: what followed it is gone (the stream now is "
                f"epoch {generation.epoch}); start a new one without Last-Event-ID",
                code=ErrorCode.REPLAY_GAP,
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

    def _unknown(self, session: Session, why: str) -> None:
        self.responder.error(
            session,
            "stream",
            404,
            f"{why}; start a new one without Last-Event-ID",
            code=ErrorCode.UNKNOWN_STREAM,
        )

    def _unavailable(self, session: Session, found: Unavailable) -> None:
        message = f"the shared journal did not answer ({found.reason}); retry shortly"
        self.responder.error(session, "stream", 503, message, retry_after=1)


def _query_value(target: str, name: str) -> str | None:
    values = parse_qs(urlsplit(target).query).get(name)
    return values[0] if values else None


def _last_event_position(last_event_id: str | None) -> tuple[str, int] | None:
    """The epoch and sequence number a ``Last-Event-ID`` names (None: there is none)."""
    if last_event_id is None:
        return None
    match = LAST_EVENT_ID.fullmatch(last_event_id)
    if match is None:
        shown = last_event_id if len(last_event_id) <= 40 else f"{last_event_id[:40]}..."
        raise BadRequest(
            f"Last-Event-ID {shown!r} is not an event id of this server (<epoch>.<seq>)"
        )
    return match[1], int(match[2])


def _resume_token(resume_id: str, request: StreamRequest) -> str:
    """A client-chosen id names a generation only together with its request, so two
    clients that pick the same id never share (or replay) each other's audio."""
    digest = hashlib.sha256(
        json.dumps([resume_id, request.text, request.voice, request.speed]).encode()
    ).hexdigest()
    return digest[:32]
