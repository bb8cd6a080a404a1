"""``/ws``: the diaproto.v1 WebSocket, on which a client opens, resumes and cancels streams.

Each ``open`` starts a generation for one stream of the connection; a ``resume`` names a
generation by its token and continues it after the last record the client had. A stream that
cannot be opened fails alone, with a code (the connection goes on).
"""

from __future__ import annotations

import logging
import secrets
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from diaproto.apps.serve.audio import BYTES_PER_SECOND, FRAME_BYTES
from diaproto.apps.serve.listeners import StreamListener
from diaproto.apps.serve.model_queue import ModelBusy
from diaproto.apps.serve.requests import BadRequest, parse_pace, parse_stream_options
from diaproto.events import WebSocketRequest
from diaproto.journal import Unavailable
from diaproto.mcp.http import peer_host
from diaproto.runtime import Session
from diaproto.wire import SUBPROTOCOL, ErrorCode, OpenStream, ResumeStream

if TYPE_CHECKING:
    from diaproto.apps.serve.app import ConnectionState, DiaService, Found

log = logging.getLogger("diaproto.serve")

#: What the clock saves up for a player's paced stream (100 ms of audio): a timer up to that
#: late is made up at once.
REALTIME_BURST = round(0.1 * BYTES_PER_SECOND)


class WebSocketStreams:
    """The diaproto.v1 WebSocket endpoint and the streams its clients open on it."""

    def __init__(self, service: DiaService) -> None:
        self.service = service

    def accept(self, session: Session, request: WebSocketRequest) -> None:
        path = urlsplit(request.target).path
        responder = self.service.responder
        if path != "/ws":
            responder.error(session, "ws", 404, f"no WebSocket endpoint at {path}")
        elif SUBPROTOCOL not in request.subprotocols:
            responder.error(session, "ws", 400, f"offer the subprotocol {SUBPROTOCOL!r}")
        else:
            session.conn.accept_websocket(SUBPROTOCOL, now=session.runtime.now())
            self.service.metrics.requests.labels("ws", "101").inc()

    def open(self, session: Session, state: ConnectionState, event: OpenStream) -> None:
        service = self.service
        conn, now = session.conn, session.runtime.now()
        if self._taken(session, state, event.stream_id):
            conn.fail_stream(
                None, ErrorCode.STREAM_EXISTS, f"stream {event.stream_id} is already open", now
            )
            return
        try:
            parsed = parse_stream_options(event.text, event.voice, event.options)
            realtime = parse_pace(event.options)
        except BadRequest as exc:
            conn.fail_stream(event.stream_id, ErrorCode.INVALID_REQUEST, str(exc), now)
            return
        limited = self._stream_limit_message(session, state) or service.peer_limit_message(
            peer_host(session.peer)
        )
        if limited is not None:
            conn.fail_stream(event.stream_id, ErrorCode.LIMIT_EXCEEDED, limited, now)
            return
        try:
            admission = service.admit()
        except ModelBusy as exc:
            log.warning("ws refused: %s", exc)
            conn.fail_stream(event.stream_id, ErrorCode.BUSY, str(exc), now)
            return
        token = secrets.token_urlsafe(12)
        credit_based = event.credit is not None
        generation = service.start_generation(
            session, token, parsed, admission, credit_based=credit_based
        )
        listener = StreamListener(session, event.stream_id)
        pacing = self._pacing(realtime, event.credit)
        service.attach(session, generation, listener, after=None, credit=event.credit, **pacing)

    def _pacing(self, realtime: bool, credit: int | None) -> dict[str, Any]:
        """How a stream whose player asked for ``pace: "realtime"`` is sent: at real time,
        evenly, by this server's clock, after a first lead; not asked, as fast as it is
        made (within credit).

        With credit (which follows its playback, in the bunches its audio device plays
        in), the lead is half the window: the other half is room the pace keeps from the
        credit, so the clock, not the bunches, spaces the chunks. The clock saves up at
        most :data:`REALTIME_BURST`, so a late timer is made up. Without credit, a
        ``--sse-lead`` ahead, as SSE."""
        if not realtime:
            return {}
        if credit is not None:
            lead = max(credit // 2, FRAME_BYTES)
            return {"pace": BYTES_PER_SECOND, "lead": lead, "burst": min(lead, REALTIME_BURST)}
        lead = round(self.service.limits.sse_lead * BYTES_PER_SECOND)
        return {"pace": BYTES_PER_SECOND, "lead": max(lead, FRAME_BYTES)}

    def resume(self, session: Session, state: ConnectionState, event: ResumeStream) -> None:
        conn, now = session.conn, session.runtime.now()
        if not event.token:
            self._unknown(session, event)
            return
        if self._taken(session, state, event.stream_id):
            conn.fail_stream(
                None, ErrorCode.STREAM_EXISTS, f"stream {event.stream_id} is already open", now
            )
            return
        limited = self._stream_limit_message(session, state)
        if limited is not None:  # also bounds the journal reads one connection can start
            conn.fail_stream(event.stream_id, ErrorCode.LIMIT_EXCEEDED, limited, now)
            return
        # Here, or (with a shared journal) run by another worker: the answer may come later.
        state.pending.add(event.stream_id)
        then = partial(self._resume_found, session, state, event)
        self.service.find(session, event.token, then, reach=event.after)

    def _resume_found(
        self, session: Session, state: ConnectionState, event: ResumeStream, found: Found
    ) -> None:
        state.pending.discard(event.stream_id)
        conn, now = session.conn, session.runtime.now()
        if isinstance(found, Unavailable):
            message = f"the shared journal did not answer ({found.reason}); retry shortly"
            conn.fail_stream(event.stream_id, ErrorCode.BUSY, message, now)
            return
        if found is None:
            self._unknown(session, event)
            return
        generation = found
        if event.after > generation.replay.last_seq:
            # The client claims records never sent: continuing would look seamless and not be.
            message = (
                f"after={event.after} is past the last record sent ({generation.replay.last_seq})"
            )
            conn.fail_stream(event.stream_id, ErrorCode.INVALID_REQUEST, message, now)
            return
        listener = StreamListener(session, event.stream_id)
        # A credit-based stream stays so, from 0: what was granted on the lost connection
        # may have been spent on records that never arrived (protocol §10).
        credit = 0 if generation.credit_based else None
        self.service.attach(session, generation, listener, after=event.after, credit=credit)

    def _taken(self, session: Session, state: ConnectionState, stream_id: int) -> bool:
        return (
            stream_id in state.listeners
            or stream_id in state.pending
            or session.conn.scheduler.has_stream(stream_id)
        )

    def _unknown(self, session: Session, event: ResumeStream) -> None:
        session.conn.fail_stream(
            event.stream_id,
            ErrorCode.UNKNOWN_STREAM,
            "no generation with that resume token",
            session.runtime.now(),
        )

    def _stream_limit_message(self, session: Session, state: ConnectionState) -> str | None:
        limit = self.service.limits.max_streams_per_connection
        if len(state.listeners) + len(state.pending) < limit:
            return None
        log.warning("peer %s refused: %d streams open on its connection", session.peer, limit)
        self.service.metrics.refused.labels("streams_per_connection").inc()
        return f"this connection already has {limit} streams open (the limit)"
