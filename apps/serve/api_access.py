"""Who may call the API (``/v1/*``, ``/ws``) and from which web pages: API keys and CORS.

API keys (``--api-key``) are OpenAI's ``Authorization: Bearer <key>``, compared in constant
time against every configured key (several keys let an operator rotate one). Browsers are
told by CORS which pages may read the answers: the origins ``--allow-origin`` names and
loopback pages, as the Origin check already lets through; any other page was refused (403)
before it got here.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from diaproto.events import Headers
from diaproto.headers import header_values
from diaproto.mcp import McpHttpConfig
from diaproto.mcp.http import origin_allowed

# What a browser may send and read on a cross-origin call: OpenAI's clients add their own
# headers (``x-stainless-*``, ``openai-*``), so a preflight's request is echoed back when
# its origin is allowed at all.
ALLOWED_METHODS = "GET, POST, OPTIONS"
EXPOSED_HEADERS = "retry-after, content-type"
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may cache the preflight's answer


def protected(path: str) -> bool:
    """The endpoints keys and CORS govern: OpenAI's ``/v1/*`` and the WebSocket API."""
    return path == "/ws" or path.startswith("/v1/")


class ApiAccess:
    """The API's keys and its cross-origin rules."""

    def __init__(self, config: McpHttpConfig, api_keys: Sequence[str] = ()) -> None:
        if any(not key or any(char.isspace() for char in key) for key in api_keys):
            raise ValueError("an API key must be non-empty and hold no white space")
        self.config = config
        self._keys = tuple(key.encode() for key in api_keys)

    @property
    def needs_key(self) -> bool:
        return bool(self._keys)

    def authorized(self, headers: Headers) -> bool:
        """True without keys, or when ``Authorization: Bearer`` carries one of them."""
        if not self._keys:
            return True
        values = header_values(headers, "authorization")
        scheme, _, given = (values[0] if len(values) == 1 else "").partition(" ")
        offered = given.strip().encode("utf-8", "replace")
        # Every key is compared, whatever matched: the time taken says nothing about which.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(key, offered)
        return scheme.lower() == "bearer" and matched

    def cors_headers(self, headers: Headers) -> tuple[tuple[str, str], ...]:
        """What an answer to this request tells a browser: nothing without an Origin (not a
        browser) or for an origin that is not allowed."""
        origin = self._allowed_origin(headers)
        if origin is None:
            return ()
        return (
            ("access-control-allow-origin", origin),
            ("access-control-expose-headers", EXPOSED_HEADERS),
            ("vary", "origin"),
        )

    def preflight_headers(self, headers: Headers) -> tuple[tuple[str, str], ...] | None:
        """The answer to a CORS preflight (``OPTIONS`` with an Origin), or None when it is
        not one."""
        origin = self._allowed_origin(headers)
        if origin is None or not header_values(headers, "access-control-request-method"):
            return None
        requested = ", ".join(header_values(headers, "access-control-request-headers"))
        answer = [
            ("access-control-allow-origin", origin),
            ("access-control-allow-methods", ALLOWED_METHODS),
            ("access-control-max-age", PREFLIGHT_MAX_AGE),
            ("vary", "origin"),
        ]
        if requested:
            answer.append(("access-control-allow-headers", requested))
        return tuple(answer)

    def _allowed_origin(self, headers: Headers) -> str | None:
        origins = header_values(headers, "origin")
        if len(origins) != 1 or not origin_allowed(origins[0], self.config):
            return None
        return origins[0]
