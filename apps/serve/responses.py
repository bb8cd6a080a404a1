"""Whole HTTP answers of the service's endpoints, counted in its metrics by endpoint and status.

Errors are JSON in the shape OpenAI's API uses (``{"error": {"message", "type", "param",
"code"}}``), so an OpenAI client reports them as it would its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from diaproto.apps.serve.metrics import ServiceMetrics
from diaproto.events import Headers
from diaproto.runtime import Session


def _no_headers(session: Session) -> Headers:
    return ()


class Responder:
    """Answers a request at once, with a body of any type or with a JSON error."""

    def __init__(
        self, metrics: ServiceMetrics, extra_headers: Callable[[Session], Headers] = _no_headers
    ) -> None:
        self.metrics = metrics
        # Headers every answer on the session carries (CORS for the API's callers).
        self.extra_headers = extra_headers

    def respond(
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
        headers: Headers = (),
    ) -> None:
        answer = [
            ("content-type", content_type),
            ("cache-control", cache),
            *headers,
            *self.extra_headers(session),
        ]
        if allow is not None:
            answer.append(("allow", allow))
        if retry_after is not None:
            answer.append(("retry-after", str(retry_after)))
        session.conn.respond(status, tuple(answer), body, now=session.runtime.now())
        self.metrics.requests.labels(endpoint, str(status)).inc()

    def error(
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
        headers: Headers = (),
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
        self.respond(
            session,
            endpoint,
            status,
            body,
            "application/json",
            allow=allow,
            retry_after=retry_after,
            headers=headers,
        )
