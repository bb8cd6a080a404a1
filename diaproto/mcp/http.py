"""The HTTP rules every MCP transport shares, as pure checks that return a refusal or None.

In the order a request meets them: ``Host`` against an allowlist (421, DNS rebinding), a
present ``Origin`` against an allowlist (403), the optional bearer token (401 with
``WWW-Authenticate``); then for a POST the body size (413), ``Content-Type`` (415) and
``Accept`` (406); for a stream, ``Accept: text/event-stream`` (406). Refusal bodies are
JSON-RPC errors with a null id, which both official SDKs surface as readable errors.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from diaproto.errors import LocalProtocolError
from diaproto.events import Headers
from diaproto.headers import header_values
from diaproto.mcp.jsonrpc import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

#: The HTTP status a JSON-RPC error answered directly on a POST carries (2026-07-28).
STATUS_OF_CODE = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    METHOD_NOT_FOUND: 404,
    INVALID_PARAMS: 400,
    INTERNAL_ERROR: 500,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
}


@dataclass(frozen=True, slots=True)
class McpHttpConfig:
    """Who may talk to the MCP endpoints, and how much."""

    #: Host names accepted in ``Host`` (any port). Loopback only by default.
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    #: Origins accepted besides ``http(s)://<allowed host>[:port]`` (exact, e.g.
    #: ``https://app.example``). An absent Origin (a non-browser client) is always fine.
    allowed_origins: tuple[str, ...] = ()
    #: When set, every request needs ``Authorization: Bearer <token>``.
    bearer_token: str | None = None
    max_body_bytes: int = 1024 * 1024
    #: A session with no request and no open stream for this long is ended.
    session_idle_timeout: float = 600.0
    #: The reconnection delay (``retry:``) of a resumable stream, in milliseconds, sent only
    #: where the connection sends none of its own (``ConnectionConfig.sse_retry_ms``, which
    #: opens every SSE stream): one ``retry`` field per stream.
    retry_ms: int = 1000
    #: Streamable HTTP sessions held at most. When the table is full, an ``initialize`` evicts
    #: an idle session (never-used ones first, oldest first); only when every session is in
    #: use is it refused (503).
    max_sessions: int = 10_000
    #: Sessions held at most for one peer address (all clients behind one proxy or NAT share
    #: it). Past it, that peer's own idle sessions are evicted first; if all are in use, 429.
    max_sessions_per_peer: int = 128
    #: ``Retry-After`` (seconds) of a refused ``initialize``.
    session_retry_after: int = 5
    #: The largest WAV a ``speak`` result carries inline (base64: 4/3 of it). Longer audio is
    #: a ``resource_link``. The official Python SDK refuses an SSE event over 1 MiB, and
    #: WebSocket clients commonly cap a message at 1 MiB: 384 KiB of WAV (about 4.4 s) is a
    #: 512 KiB message.
    max_inline_audio_bytes: int = 384 * 1024
    #: The scheme and authority of audio links (``https://tts.example``); None: ``http://``
    #: and the request's ``Host`` (already checked against ``allowed_hosts``).
    public_base_url: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_sessions", "max_sessions_per_peer", "session_retry_after"):
            if getattr(self, name) <= 0:
                raise LocalProtocolError(f"{name} must be positive")
        if self.max_inline_audio_bytes < 0:
            raise LocalProtocolError("max_inline_audio_bytes must not be negative")


@dataclass(frozen=True, slots=True)
class HttpRefusal:
    status: int
    message: str
    code: int = INVALID_REQUEST
    headers: Headers = ()

    def body(self) -> bytes:
        error = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": self.code, "message": self.message},
        }
        return json.dumps(error).encode()

    def response_headers(self) -> Headers:
        return (("content-type", "application/json"), ("cache-control", "no-store"), *self.headers)


def host_name(authority: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:80`` -> ``[::1]``; lower case."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        end = authority.find("]")
        return authority[: end + 1] if end > 0 else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def check_access(headers: Headers, config: McpHttpConfig) -> HttpRefusal | None:
    """Host, Origin and bearer token: the checks every MCP request passes first."""
    hosts = header_values(headers, "host")
    if len(hosts) != 1 or host_name(hosts[0]) not in config.allowed_hosts:
        shown = hosts[0] if hosts else "(none)"
        return HttpRefusal(421, f"Host {shown!r} is not served here (DNS rebinding guard)")
    origins = header_values(headers, "origin")
    if origins and not origin_allowed(origins[0], config):
        return HttpRefusal(403, f"Origin {origins[0]!r} is not allowed")
    if config.bearer_token is not None:
        given = next(iter(header_values(headers, "authorization")), "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), config.bearer_token.encode()
        ):
            challenge = 'Bearer realm="diaproto", error="invalid_token"'
            return HttpRefusal(
                401, "a valid bearer token is required", headers=(("www-authenticate", challenge),)
            )
    return None


def origin_allowed(origin: str, config: McpHttpConfig) -> bool:
    if origin in config.allowed_origins:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    if parts.scheme not in ("http", "https") or parts.path or not parts.netloc:
        return False  # includes the opaque origin "null"
    return host_name(parts.netloc) in config.allowed_hosts


def check_post(headers: Headers, body: bytes, config: McpHttpConfig) -> HttpRefusal | None:
    """A POST carrying one JSON-RPC message: size, media type, and what it accepts back."""
    if len(body) > config.max_body_bytes:
        return HttpRefusal(413, f"the body is over {config.max_body_bytes} bytes")
    content_type = next(iter(header_values(headers, "content-type")), "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return HttpRefusal(415, "Content-Type must be application/json")
    if not accepts(headers, "application/json") or not accepts(headers, "text/event-stream"):
        return HttpRefusal(406, "Accept must list both application/json and text/event-stream")
    return None


def session_header(headers: Headers) -> tuple[str | None, HttpRefusal | None]:
    """The request's ``Mcp-Session-Id``; sent twice is a 400 (no "first one wins": two
    proxies or a confused client could otherwise act on a session nobody meant)."""
    values = header_values(headers, "mcp-session-id")
    if len(values) > 1:
        return None, HttpRefusal(400, "Mcp-Session-Id is sent more than once")
    return (values[0] if values else None), None


def peer_host(peer: str) -> str:
    """A peer address without its port (``127.0.0.1:5000`` -> ``127.0.0.1``), the unit that
    per-peer limits count in."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


_AUTHORITY = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def base_url(headers: Headers, config: McpHttpConfig) -> str:
    """Where this server's links point: ``public_base_url``, else ``http://`` and the
    request's ``Host`` (already allowlisted); "" (links stay relative) for a ``Host`` that
    is not a plain ``name[:port]``."""
    if config.public_base_url is not None:
        return config.public_base_url.rstrip("/")
    hosts = header_values(headers, "host")
    if len(hosts) != 1 or _AUTHORITY.fullmatch(hosts[0].strip()) is None:
        return ""
    return f"http://{hosts[0].strip()}"


def check_stream(headers: Headers) -> HttpRefusal | None:
    """A GET that opens an SSE stream must accept one."""
    if not accepts(headers, "text/event-stream"):
        return HttpRefusal(406, "Accept must list text/event-stream")
    return None


def accepts(headers: Headers, media_type: str) -> bool:
    kind = media_type.split("/", 1)[0]
    for value in header_values(headers, "accept"):
        for item in value.split(","):
            name = item.split(";", 1)[0].strip().lower()
            if name in (media_type, f"{kind}/*", "*/*"):
                return True
    return False
