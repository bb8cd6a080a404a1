"""The MCP endpoints' plain HTTP answers: a JSON body, any other body, a refusal.

Each answers a request whole and wakes its connection, so the response leaves at once.
"""

from __future__ import annotations

import logging

from diaproto.events import Headers
from diaproto.mcp import HttpRefusal
from diaproto.runtime import Session

log = logging.getLogger("diaproto.mcp")


def answer_json(
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


def answer(conn: Session, status: int, body: bytes, content_type: str | None, now: float) -> None:
    headers = (("content-type", content_type),) if content_type else ()
    conn.conn.respond(status, headers, body, now=now)
    conn.wake()


def refuse(conn: Session, refusal: HttpRefusal, now: float) -> None:
    log.info("MCP %s from %s: %s", refusal.status, conn.peer, refusal.message)
    conn.conn.respond(refusal.status, refusal.response_headers(), refusal.body(), now=now)
    conn.wake()


def method_not_allowed(allow: str) -> HttpRefusal:
    return HttpRefusal(405, f"method not allowed here; use {allow}", headers=(("allow", allow),))
