"""The access log: one line per HTTP exchange, WebSocket session and WebSocket stream, on the
logger ``diaproto.access`` at info.

:class:`AccessLog` wraps an application and watches the events the adapter hands it; the
answer's status and size are what the core reports (``conn.response_status``, and
``conn.bytes_produced``: the bytes produced for the peer, head and framing included), the
duration is the runtime's clock. It decides nothing and answers nothing.

When a line is written:

- a plain answer given while its request is handled: at once;
- an answer given later (from a callback), or a streamed one (SSE, chunked): at the next event
  of its connection that finds it complete (an SSE stream's end, the next request on a
  keep-alive connection) or at the connection's end;
- a WebSocket session: at the connection's end; each of its streams: at the stream's end;
- a request the core refused itself (malformed, too large): when the refusal is reported,
  with ``-`` for what it could not read.

Each exchange has an id: the client's ``X-Request-Id`` when it is a short token, else a random
one. While the application handles the exchange's events, :data:`diaproto.apps.logs.request_id`
holds it, so the service's own log lines carry it too. The path is logged without its query
(which may hold a token). Fields (``extra=``, keys of the JSON format): ``request_id``,
``kind`` (http, sse, websocket, stream), ``method``, ``path``, ``status``, ``bytes``,
``duration_ms``, ``peer``, and ``stream_id`` / ``streams`` where they apply.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from diaproto.apps.logs import request_id
from diaproto.events import (
    ConnectionClosed,
    Event,
    RemoteError,
    Request,
    SseRequest,
    StreamFinished,
    WebSocketRequest,
)
from diaproto.runtime import Application, Runtime, Session
from diaproto.server import State

log = logging.getLogger("diaproto.access")

#: A client's X-Request-Id is kept when it looks like an id (a proxy's, say).
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: Where the exchange is still going on: answered later, or streaming.
UNDER_WAY = frozenset({State.REQUEST_RECEIVED, State.STREAMING, State.WEBSOCKET})


@dataclass(slots=True)
class _Exchange:
    rid: str
    kind: str  # "http", "sse" or "websocket": what the request asked for
    method: str
    path: str
    peer: str
    started: float
    bytes_before: int  # the connection's bytes_produced when the request came
    streams: int = 0  # a WebSocket's streams that ended


class AccessLog:
    """An :class:`~diaproto.runtime.Application` that logs what ``app`` answers."""

    def __init__(self, app: Application, logger: logging.Logger = log) -> None:
        self.app = app
        self.log = logger
        self._open: dict[Session, _Exchange] = {}

    def started(self, runtime: Runtime) -> None:
        started = getattr(self.app, "started", None)
        if callable(started):
            started(runtime)

    def shutdown(self) -> None:
        self.app.shutdown()

    def handle_event(self, session: Session, event: Event) -> None:
        if isinstance(event, Request | SseRequest | WebSocketRequest):
            self._end(session)  # the previous exchange on a keep-alive connection
            self._open[session] = self._begin(session, event)
        exchange = self._open.get(session)
        if exchange is None:
            self.app.handle_event(session, event)
            if isinstance(event, RemoteError) and event.error.http_status:
                self._refused(session, event)
            return
        token = request_id.set(exchange.rid)
        try:
            self.app.handle_event(session, event)
        finally:
            request_id.reset(token)
        if isinstance(event, ConnectionClosed):
            self._end(session)
        elif exchange.kind == "websocket" and session.conn.response_status == 101:
            if isinstance(event, StreamFinished):
                self._stream_end(session, exchange, event)
        elif session.conn.state not in UNDER_WAY:  # also an upgrade refused with an answer
            self._end(session)

    # --- the lines -------------------------------------------------------------------------

    def _begin(self, session: Session, event: Request | SseRequest | WebSocketRequest) -> _Exchange:
        if isinstance(event, WebSocketRequest):
            kind, method = "websocket", "GET"
        else:
            kind, method = ("sse" if isinstance(event, SseRequest) else "http"), event.method
        given = event.header("x-request-id")
        rid = given if given and CLIENT_ID.fullmatch(given) else secrets.token_hex(6)
        return _Exchange(
            rid,
            kind,
            method,
            urlsplit(event.target).path or "/",
            session.peer,
            session.runtime.now(),
            session.conn.bytes_produced,
        )

    def _end(self, session: Session) -> None:
        exchange = self._open.pop(session, None)
        if exchange is None:
            return
        conn = session.conn
        fields: dict[str, Any] = {
            "request_id": exchange.rid,
            "kind": exchange.kind,
            "method": exchange.method,
            "path": exchange.path,
            "status": conn.response_status,
            "bytes": conn.bytes_produced - exchange.bytes_before,
            "duration_ms": round((session.runtime.now() - exchange.started) * 1000, 1),
            "peer": exchange.peer,
        }
        if exchange.kind == "websocket":
            fields["streams"] = exchange.streams
        self._write(fields)

    def _stream_end(self, session: Session, exchange: _Exchange, event: StreamFinished) -> None:
        exchange.streams += 1
        metrics = event.metrics
        self._write(
            {
                "request_id": f"{exchange.rid}/{event.stream_id}",
                "kind": "stream",
                "method": exchange.method,
                "path": exchange.path,
                "status": None,
                "bytes": metrics.bytes_sent,
                "duration_ms": round((session.runtime.now() - metrics.opened_at) * 1000, 1),
                "peer": exchange.peer,
                "stream_id": event.stream_id,
            }
        )

    def _refused(self, session: Session, event: RemoteError) -> None:
        self._write(
            {
                "request_id": secrets.token_hex(6),
                "kind": "http",
                "method": "-",
                "path": "-",
                "status": event.error.http_status,
                "bytes": None,
                "duration_ms": None,
                "peer": session.peer,
                "reason": event.error.message,
            }
        )

    def _write(self, fields: dict[str, Any]) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        shown = {key: "-" if value is None else value for key, value in fields.items()}
        kind = "" if fields["kind"] in ("http", "sse") else f" {fields['kind']}"
        extra = f" {shown['duration_ms']}ms" if fields["duration_ms"] is not None else ""
        self.log.info(
            '%s "%s %s" %s %s%s%s',
            shown["peer"],
            shown["method"],
            shown["path"],
            shown["status"],
            shown["bytes"],
            extra,
            kind,
            extra=fields,
        )
