"""A client request the application is answering, and what may still be sent about it.

The session keeps one :class:`Call` per request in flight, from the event it hands out to
the response. Progress values must strictly increase, and partial results (SEP-2998) are
numbered from 0; once the response is out the call is gone, so nothing more is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diaproto.mcp.protocol import PARTIAL_RESULT_TOKEN


@dataclass(slots=True)
class Call:
    method: str
    progress_token: str | int | None = None
    last_progress: float | None = None
    partial_token: str | int | None = None
    partial_seq: int = 0

    def progress(
        self, progress: float, total: float | None, message: str | None
    ) -> dict[str, Any] | None:
        """The params of a ``notifications/progress``; None when none may be sent: the
        client gave no token, or ``progress`` is not above the last value sent."""
        if self.progress_token is None:
            return None
        if self.last_progress is not None and progress <= self.last_progress:
            return None
        self.last_progress = progress
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        return params

    def partial_result(self, content: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The params of the next partial result; None if the client did not opt in."""
        if self.partial_token is None:
            return None
        params: dict[str, Any] = {
            PARTIAL_RESULT_TOKEN: self.partial_token,
            "seq": self.partial_seq,
            "content": content,
        }
        self.partial_seq += 1
        return params


def meta_of(params: dict[str, Any]) -> dict[str, Any]:
    """A request's ``_meta``, or an empty one when it has none (or not an object)."""
    meta = params.get("_meta")
    return meta if isinstance(meta, dict) else {}


def as_token(value: object) -> str | int | None:
    """A progress or partial-result token (or request id): a string or an integer, not a bool."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value
