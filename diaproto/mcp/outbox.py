"""The messages an MCP session has for the client, in order, each labelled for the channel.

A label says how to schedule the message (:class:`~diaproto.mcp.protocol.Kind`), which
request it is about (so which stream carries it), and whether it is the response that ends
that request. :class:`~diaproto.mcp.channel.McpChannel` reads the labels.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from diaproto.mcp.jsonrpc import (
    JsonRpcErrorResponse,
    JsonRpcResponse,
    Message,
    RequestId,
    encode_message,
)
from diaproto.mcp.protocol import Kind


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message to send: its JSON text, how to schedule it, the request it is about."""

    text: str
    kind: Kind
    related: RequestId | None = None
    #: Progress: the token it coalesces under. A final response: the call's token, so the
    #: channel withdraws a report still queued (nothing about a request after its response).
    progress_token: str | int | None = None
    final: bool = False  # the response that ends ``related``
    error_code: int | None = None  # set on an error response (an HTTP status may follow it)


class Outbox:
    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: deque[Outbound] = deque()

    def send(
        self,
        message: Message,
        kind: Kind,
        related: RequestId | None = None,
        token: str | int | None = None,
        *,
        final: bool = False,
        error_code: int | None = None,
    ) -> None:
        text = encode_message(message)
        self._queue.append(Outbound(text, kind, related, token, final, error_code))

    def result(
        self, request_id: RequestId, result: dict[str, Any], token: str | int | None = None
    ) -> None:
        """The response that ends ``request_id``; ``token``: that call's progress token."""
        self.send(JsonRpcResponse(request_id, result), Kind.RESPONSE, request_id, token, final=True)

    def error(
        self,
        request_id: RequestId,
        code: int,
        message: str,
        data: Any = None,
        token: str | int | None = None,
    ) -> None:
        """The error response that ends ``request_id``, its code on the label."""
        error = JsonRpcErrorResponse(request_id, code, message, data)
        self.send(error, Kind.RESPONSE, request_id, token, final=True, error_code=code)

    def next(self) -> Outbound | None:
        return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        self._queue.clear()
