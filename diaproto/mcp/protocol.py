"""MCP revisions, message kinds and the shapes of the few messages the core builds itself."""

from __future__ import annotations

from enum import Enum

#: Revisions that open with the ``initialize`` handshake, newest first.
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
#: Revisions without a handshake: every request carries its version in ``_meta``.
MODERN_VERSIONS = ("2026-07-28",)
SUPPORTED_VERSIONS = MODERN_VERSIONS + HANDSHAKE_VERSIONS
LATEST_HANDSHAKE_VERSION = HANDSHAKE_VERSIONS[0]
#: What a Streamable HTTP request without ``MCP-Protocol-Version`` is taken to speak.
DEFAULT_HTTP_VERSION = "2025-03-26"

#: The per-request envelope of 2026-07-28 (``params._meta``).
META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"

META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

#: SEP-2998 (draft): streamed tool output. A client declares the ``partialResults``
#: capability (top level, or under ``experimental``) and opts a call in with
#: ``_meta.partialResultToken``; each notification carries that token and a ``seq`` from 0.
PARTIAL_RESULT_METHOD = "notifications/tools/partial_result"
PARTIAL_RESULT_CAPABILITY = "partialResults"
PARTIAL_RESULT_TOKEN = "partialResultToken"

#: The client capability a server-to-client request needs (a client without it is never
#: sent that request, nor asked for it in an input-required result).
CAPABILITY_OF_CLIENT_METHOD = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}

#: RFC 5424 severities, in order, as ``logging/setLevel`` names them.
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def negotiate_version(requested: object) -> str:
    """The revision we answer ``initialize`` with: the client's if we speak it (with a
    handshake), else our newest handshake revision (the client may then disconnect)."""
    if isinstance(requested, str) and requested in HANDSHAKE_VERSIONS:
        return requested
    return LATEST_HANDSHAKE_VERSION


class Kind(Enum):
    """What an outgoing message is, which decides how it is scheduled (see ``channel``)."""

    RESPONSE = "response"  # a result or error: control class, never dropped
    CONTROL = "control"  # ping, cancelled, list_changed: control class
    PROGRESS = "progress"  # notifications/progress: coalesced to the newest per token
    PARTIAL = "partial"  # streamed tool output: lossless, paced by backpressure
    LOG = "log"  # notifications/message: the oldest is dropped when a client lags
