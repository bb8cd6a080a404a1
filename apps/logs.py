"""The command's logging: ``--log-format text`` (one line per record) or ``json`` (one JSON
object per line: timestamp, level, logger, message, and the record's structured fields), to
stderr, with the id of the request or stream being handled in every line where one is known.

The id comes from :data:`request_id`, a context variable the access log
(:mod:`diaproto.apps.serve.access_log`) sets while the service handles a connection's event;
records logged meanwhile carry it, whichever module logs them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(request_tag)s"

#: The request or stream id of what is being handled on this thread (None: none known).
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "diaproto_request_id", default=None
)

#: The attributes every LogRecord has: the others are the ``extra=`` fields.
_STANDARD = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "request_tag",
    }
)


class RequestIdFilter(logging.Filter):
    """Gives every record ``request_id`` (from :data:`request_id` unless the record has one)
    and ``request_tag`` (`` [id]`` or empty) for the text format."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or request_id.get()
        record.request_id = rid
        record.request_tag = f" [{rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: the fixed keys, then the record's ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "info", log_format: str = "text") -> logging.Handler:
    """Log to stderr at ``level`` in ``log_format``; returns the handler installed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    # A no-op where the root logger has handlers already (a test runner's): as before.
    logging.basicConfig(level=level.upper(), handlers=[handler])
    return handler
