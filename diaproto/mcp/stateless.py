"""Streamable HTTP at 2026-07-28: no session, every request names its version twice.

A request is served on this path when its ``MCP-Protocol-Version`` header names a version
that has no handshake (2026-07-28, or one we do not know). :func:`check_request` runs the
checks in the order the revision gives, first failure wins:

1. ``params._meta`` carries the envelope (protocol version and client capabilities): -32602.
2. ``MCP-Protocol-Version`` equals the envelope's version, ``Mcp-Method`` the body's method,
   ``Mcp-Name`` the tool name (prompt name, resource URI, or task id), and on ``tools/call``
   each ``Mcp-Param-<Name>`` the argument its tool's input schema marks with
   ``"x-mcp-header": "<Name>"`` (SEP-2243): -32020. A header sent twice: -32020.
3. The version is one we serve: -32022 with the versions we do serve.

Then the method: those the revision removed (the handshake, ``ping``, logging, the subscribe
pair) are -32601 naming the method, as for any unknown method, whatever their params (the
handshake-era session would otherwise answer ``ping`` or judge ``initialize``'s params).

Status codes follow :data:`diaproto.mcp.http.STATUS_OF_CODE`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from diaproto.events import Headers
from diaproto.headers import header_values
from diaproto.mcp.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    JsonRpcError,
    JsonRpcRequest,
)
from diaproto.mcp.protocol import (
    HANDSHAKE_VERSIONS,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
)

#: Methods whose target is mirrored in ``Mcp-Name``, and the param that holds it.
NAME_PARAM = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "tasks/get": "taskId",
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}
ROUTING_HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name")
#: Methods of the handshake revisions that 2026-07-28 removed (SDK: ``mcp_types.methods``).
REMOVED_METHODS = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)
_BASE64_VALUE = re.compile(r"^=\?base64\?(.*)\?=$")
#: The ``x-mcp-header`` schema keyword, and the prefix of the header it names.
X_MCP_HEADER = "x-mcp-header"
PARAM_HEADER_PREFIX = "mcp-param-"
#: JSON Schema types an ``x-mcp-header`` property may have (``number`` too, as the SDKs
#: and the conformance suite accept it).
_PARAM_TYPES = frozenset({"string", "integer", "number", "boolean"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token: a header name
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")

#: A tool's ``inputSchema`` by the tool's name; None for a tool the server does not offer.
InputSchemaOf = Callable[[str], Mapping[str, Any] | None]


def is_modern(headers: Headers) -> bool:
    """Does this request take the 2026-07-28 path? (A version header without a handshake.)"""
    versions = header_values(headers, "mcp-protocol-version")
    return bool(versions) and versions[0].strip() not in HANDSHAKE_VERSIONS


def decode_header_value(value: str | None) -> str | None:
    """``Mcp-Name`` carries non-ASCII names as ``=?base64?<utf-8 base64>?=``."""
    if value is None:
        return None
    match = _BASE64_VALUE.match(value)
    if match is None:
        return value
    try:
        return base64.b64decode(match.group(1), validate=True).decode("utf-8")
    except ValueError:  # bad base64 (binascii.Error), non-ASCII input, or not UTF-8
        return None


def check_request(
    request: JsonRpcRequest, headers: Headers, input_schema: InputSchemaOf | None = None
) -> JsonRpcError | None:
    """The 2026-07-28 checks of one request; None when it may be served.

    ``input_schema`` finds a tool's input schema, for the ``Mcp-Param-<Name>`` headers of
    a ``tools/call``; without it those headers are not checked."""
    for name in ROUTING_HEADERS:
        if len(header_values(headers, name)) > 1:
            return JsonRpcError(HEADER_MISMATCH, f"{name} is sent more than once", request.id)
    params = request.params or {}
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        message = (
            f"params._meta must carry {META_PROTOCOL_VERSION!r} and {META_CLIENT_CAPABILITIES!r}"
        )
        asked = next(iter(header_values(headers, "mcp-protocol-version")), "").strip()
        if asked not in MODERN_VERSIONS:
            # Most likely a handshake-era client with a version nobody serves: say so.
            served = ", ".join(MODERN_VERSIONS + HANDSHAKE_VERSIONS)
            message = (
                f"MCP-Protocol-Version {asked!r} is not served (served: {served}); "
                f"a request at a version without a handshake is read as 2026-07-28, whose {message}"
            )
        return JsonRpcError(INVALID_PARAMS, message, request.id)
    missing = [key for key in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES) if key not in meta]
    if missing:
        return JsonRpcError(
            INVALID_PARAMS, f"params._meta is missing {', '.join(missing)}", request.id
        )
    version: Any = meta[META_PROTOCOL_VERSION]
    header_version = next(iter(header_values(headers, "mcp-protocol-version")), None)
    if header_version is None or header_version.strip() != version:
        return JsonRpcError(
            HEADER_MISMATCH, "MCP-Protocol-Version does not match params._meta", request.id
        )
    if next(iter(header_values(headers, "mcp-method")), None) != request.method:
        return JsonRpcError(HEADER_MISMATCH, "Mcp-Method does not match the method", request.id)
    name_param = NAME_PARAM.get(request.method)
    if name_param is not None and params.get(name_param) is not None:
        given = decode_header_value(next(iter(header_values(headers, "mcp-name")), None))
        if given != params[name_param]:
            return JsonRpcError(
                HEADER_MISMATCH, f"Mcp-Name does not match params.{name_param}", request.id
            )
    if request.method == "tools/call" and input_schema is not None:
        mismatch = check_param_headers(params, headers, input_schema)
        if mismatch is not None:
            return JsonRpcError(HEADER_MISMATCH, mismatch, request.id)
    if version not in MODERN_VERSIONS:
        return JsonRpcError(
            UNSUPPORTED_PROTOCOL_VERSION,
            f"protocol version {version!r} is not supported",
            request.id,
            {"supported": list(MODERN_VERSIONS), "requested": version},
        )
    if not isinstance(meta[META_CLIENT_CAPABILITIES], dict):
        return JsonRpcError(INVALID_PARAMS, "client capabilities must be an object", request.id)
    if request.method in REMOVED_METHODS:
        return JsonRpcError(
            METHOD_NOT_FOUND,
            f"method not found: {request.method} (removed in 2026-07-28)",
            request.id,
            request.method,
        )
    return None


def param_headers(schema: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """The ``x-mcp-header`` declarations of an input schema: (argument path, header name).

    Only properties reached through ``properties`` keys count, of a primitive type, with a
    header name that is an HTTP token used once (case-insensitively); any other declaration
    makes no header expected."""
    found = list(_declarations(schema, ()))
    counts: dict[str, int] = {}
    for _path, name in found:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    return [(path, name) for path, name in found if counts[name.lower()] == 1]


def _declarations(
    schema: Mapping[str, Any], path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], str]]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return
    for key, prop in properties.items():
        if not isinstance(key, str) or not isinstance(prop, Mapping):
            continue
        name = prop.get(X_MCP_HEADER)
        if isinstance(name, str) and _TOKEN.match(name) and prop.get("type") in _PARAM_TYPES:
            yield (*path, key), name
        yield from _declarations(prop, (*path, key))


def check_param_headers(
    params: Mapping[str, Any], headers: Headers, input_schema: InputSchemaOf
) -> str | None:
    """SEP-2243 on a ``tools/call``: each argument its tool marks with ``x-mcp-header`` is
    mirrored in ``Mcp-Param-<Name>`` (plain, or ``=?base64?...?=``). What is wrong, or None.

    A null or absent argument expects no header; one in the body wants its header, which
    must decode (valid Base64 inside the wrapper) to the argument: a string as it is, a
    boolean as ``true``/``false``, a number by value (``42`` is ``42.0``)."""
    name, arguments = params.get("name"), params.get("arguments")
    if not isinstance(name, str) or not isinstance(arguments, Mapping):
        return None
    schema = input_schema(name)
    if schema is None:
        return None
    for path, header in param_headers(schema):
        value = _argument(arguments, path)
        if not isinstance(value, str | int | float):
            continue  # null or absent (or no value a header can carry): no header expected
        label, where = f"Mcp-Param-{header}", f"arguments.{'.'.join(path)}"
        sent = header_values(headers, PARAM_HEADER_PREFIX + header)
        if not sent:
            return f"{label} is missing; {where} is in the body"
        if len(sent) > 1:
            return f"{label} is sent more than once"
        given = decode_header_value(sent[0].strip())
        if given is None:
            return f"{label} is not valid =?base64?...?= (Base64 of UTF-8)"
        if not _same(given, value):
            return f"{label} does not match {where}"
    return None


def _argument(arguments: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = arguments
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _same(given: str, value: str | float) -> bool:
    """Does a header's (decoded) text stand for this argument value?"""
    if isinstance(value, bool):
        return given == ("true" if value else "false")
    if isinstance(value, str):
        return given == value
    if not _NUMBER.match(given):
        return False
    # Both parse: ``given`` matched _NUMBER, and repr() of a JSON number is a Decimal literal
    # (nan and inf included; a quiet NaN compares unequal, it does not raise).
    return Decimal(given) == Decimal(repr(value))


def unsupported_version(version: str) -> JsonRpcError:
    """A request (or notification) whose version header names nothing we speak."""
    return JsonRpcError(
        UNSUPPORTED_PROTOCOL_VERSION,
        f"protocol version {version!r} is not supported",
        None,
        {"supported": list(MODERN_VERSIONS + HANDSHAKE_VERSIONS), "requested": version},
    )
