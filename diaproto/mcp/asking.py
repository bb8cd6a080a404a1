"""The requests a server sends the client (sampling, elicitation, roots), until answered.

Ids are ours, counted from 1. An answer to an id we are not waiting for (never asked, or
answered already) is dropped: nothing waits for it.
"""

from __future__ import annotations

from typing import Any

from diaproto.mcp.events import ClientReply
from diaproto.mcp.jsonrpc import JsonRpcErrorResponse, JsonRpcRequest, JsonRpcResponse, RequestId


class Questions:
    __slots__ = ("_asked", "_last_id")

    def __init__(self, last_id: int = 0) -> None:
        """``last_id``: the last id already used (a session moved from another process
        goes on from there: an id is never used twice in a session)."""
        # Our request id -> (its method, the client's request it was sent for).
        self._asked: dict[RequestId, tuple[str, RequestId | None]] = {}
        self._last_id = last_id

    @property
    def last_id(self) -> int:
        return self._last_id

    def ask(
        self, method: str, params: dict[str, Any] | None, related: RequestId | None
    ) -> JsonRpcRequest:
        self._last_id += 1
        request_id: RequestId = self._last_id
        self._asked[request_id] = (method, related)
        return JsonRpcRequest(request_id, method, params if params is not None else {})

    def answer(self, reply: JsonRpcResponse | JsonRpcErrorResponse) -> ClientReply | None:
        """The event for the client's answer; None when nothing waits for it."""
        request_id = reply.id
        asked = self._asked.pop(request_id, None) if request_id is not None else None
        if asked is None or request_id is None:
            return None
        method, related = asked
        if isinstance(reply, JsonRpcResponse):
            result = reply.result if isinstance(reply.result, dict) else {}
            return ClientReply(request_id, method, related, result)
        return ClientReply(request_id, method, related, None, reply)

    def clear(self) -> None:
        self._asked.clear()
