"""Whole HTTP answers of the service's endpoints, counted in its metrics by endpoint and status.

Errors are JSON in the shape OpenAI's API uses (``{"error": {"message", "type", "param",
"code"}}``), so an OpenAI client reports them as it would its own.
"""

from __future__ import annotations

import json

from diaproto.apps.serve.metrics import ServiceMetrics
from diaproto.runtime import Session


class Responder:
    """Answers a request at once, with a body of any type or with a JSON error."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

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
    ) -> None:
        headers = [("content-type", content_type), ("cache-control", cache)]
        if allow is not None:
            headers.append(("allow", allow))
        if retry_after is not None:
            headers.append(("retry-after", str(retry_after)))
        session.conn.respond(status, tuple(headers), body, now=session.runtime.now())
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
        )
