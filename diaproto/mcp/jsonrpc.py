"""JSON-RPC 2.0 as MCP uses it: one message per payload, precise error codes.

MCP narrows JSON-RPC: ids are strings or integers (never null, never fractional), params are
objects, and batches were removed in revision 2025-06-18. :func:`parse_message` turns one
payload into a typed message or raises :class:`JsonRpcError` with the code the peer must get
back (-32700 unparseable, -32600 not a valid message, -32602 bad params) and, when the
message had one, the request id to answer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from diaproto.errors import DiaprotoError

RequestId = str | int

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# MCP's own codes (2026-07-28): a header that disagrees with the body, a version we lack.
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021  # the request needs a capability the client lacks
UNSUPPORTED_PROTOCOL_VERSION = -32022
# Not JSON-RPC codes: the MCP convention for a request the server no longer knows.
RESOURCE_NOT_FOUND = -32002


@dataclass(frozen=True, slots=True)
class JsonRpcRequest:
    id: RequestId
    method: str
    params: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class JsonRpcNotification:
    method: str
    params: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class JsonRpcResponse:
    id: RequestId
    result: Any


@dataclass(frozen=True, slots=True)
class JsonRpcErrorResponse:
    id: RequestId | None
    code: int
    message: str
    data: Any = None


Message = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse | JsonRpcErrorResponse


class JsonRpcError(DiaprotoError):
    """A payload we must refuse; ``as_response()`` is the answer the peer gets."""

    def __init__(
        self, code: int, message: str, request_id: RequestId | None = None, data: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.data = data

    def as_response(self) -> JsonRpcErrorResponse:
        return JsonRpcErrorResponse(self.request_id, self.code, self.message, self.data)


# A surrogate escape (``\ud800``): paired ones are fine, a lone one decodes to a str that
# cannot be encoded back to UTF-8, so every answer quoting it would fail to send.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> float:
    # NaN and Infinity are not JSON; Python's decoder accepts them unless told not to.
    raise ValueError(f"{name} is not valid JSON")


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: object) -> bool:
    return isinstance(value, str) or _is_integer(value)


def parse_message(payload: bytes | str) -> Message:
    """One JSON-RPC message from one payload (a POST body, a WebSocket text frame)."""
    try:
        if isinstance(payload, str):
            payload.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        value = json.loads(text, parse_constant=_refuse_constant)
        if _SURROGATE_ESCAPE.search(text) is not None:
            json.dumps(value, ensure_ascii=False).encode("utf-8")  # likewise, once decoded
    except (ValueError, RecursionError) as exc:
        raise JsonRpcError(PARSE_ERROR, f"parse error: {exc}") from None
    if isinstance(value, list):
        raise JsonRpcError(INVALID_REQUEST, "JSON-RPC batches are not supported (MCP 2025-06-18)")
    if not isinstance(value, dict):
        raise JsonRpcError(INVALID_REQUEST, "a JSON-RPC message is a JSON object")
    raw_id = value.get("id")
    request_id = raw_id if _is_id(raw_id) else None
    if value.get("jsonrpc") != "2.0":
        raise JsonRpcError(INVALID_REQUEST, '"jsonrpc" must be "2.0"', request_id)
    if "method" in value:
        return _parse_call(value, request_id)
    return _parse_reply(value, request_id)


def _parse_call(value: dict[str, Any], request_id: RequestId | None) -> Message:
    method = value["method"]
    if not isinstance(method, str) or not method:
        raise JsonRpcError(INVALID_REQUEST, '"method" must be a non-empty string', request_id)
    if "id" in value and request_id is None:
        raise JsonRpcError(INVALID_REQUEST, '"id" must be a string or an integer')
    params = value.get("params")
    if params is not None and not isinstance(params, dict):
        raise JsonRpcError(INVALID_PARAMS, '"params" must be an object', request_id)
    if request_id is None:
        return JsonRpcNotification(method, params)
    return JsonRpcRequest(request_id, method, params)


def _parse_reply(value: dict[str, Any], request_id: RequestId | None) -> Message:
    has_result, has_error = "result" in value, "error" in value
    if has_result == has_error:
        raise JsonRpcError(
            INVALID_REQUEST, 'a message needs "method", or exactly one of "result" and "error"'
        )
    if has_result:
        if request_id is None:
            raise JsonRpcError(INVALID_REQUEST, 'a response needs a string or integer "id"')
        return JsonRpcResponse(request_id, value["result"])
    error = value["error"]
    if (
        not isinstance(error, dict)
        or not _is_integer(error.get("code"))
        or not isinstance(error.get("message"), str)
    ):
        raise JsonRpcError(INVALID_REQUEST, '"error" needs an integer "code" and a "message"')
    return JsonRpcErrorResponse(request_id, error["code"], error["message"], error.get("data"))


def encode_message(message: Message) -> str:
    """Compact JSON text of one message (what goes in a text frame or an SSE ``data``)."""
    body: dict[str, Any] = {"jsonrpc": "2.0"}
    match message:
        case JsonRpcRequest(id=request_id, method=method, params=params):
            body["id"] = request_id
            body["method"] = method
            if params is not None:
                body["params"] = params
        case JsonRpcNotification(method=method, params=params):
            body["method"] = method
            if params is not None:
                body["params"] = params
        case JsonRpcResponse(id=request_id, result=result):
            body["id"] = request_id
            body["result"] = result
        case _:  # JsonRpcErrorResponse: the union has no other member
            body["id"] = message.id
            error: dict[str, Any] = {"code": message.code, "message": message.message}
            if message.data is not None:
                error["data"] = message.data
            body["error"] = error
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def is_finite_number(value: object) -> bool:
    """A JSON number MCP accepts (progress values, speeds): not bool, not NaN/inf."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
