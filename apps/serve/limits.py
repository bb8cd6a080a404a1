"""What one client may claim of the service, and which web pages may talk to it.

A connection holds at most ``max_streams_per_connection`` streams, and one peer (a host,
whatever number of connections it opens) at most ``max_generations_per_peer`` generations,
counting those held for a resume after their client left: open-then-reset churn runs into
the same bound as opening and never reading. Past either, the request is refused with a
clear error (wire ``limit_exceeded``, HTTP 429 with ``Retry-After``) and counted.

Browsers are kept out unless invited: a request that carries an ``Origin`` (only browsers
send one) is served only when that origin names an allowed host, as the MCP endpoints do
(see :mod:`diaproto.mcp.http`), so a web page the user happens to open cannot drive a
server on the user's machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from diaproto.events import Headers
from diaproto.headers import header_values
from diaproto.mcp.http import McpHttpConfig, origin_allowed

__all__ = ["MAX_SSE_LEAD", "GenerationRefused", "ServiceLimits", "refused_origin"]

MAX_SSE_LEAD = 60.0  # seconds: a minute of audio, 5 MiB at 44.1 kHz


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """Per-client bounds of ``diaproto serve`` (``--max-streams-per-connection``,
    ``--max-generations-per-peer``, ``--sse-lead``)."""

    max_streams_per_connection: int = 16
    max_generations_per_peer: int = 16
    # Seconds of audio an SSE stream (``/stream``) may run ahead of real time: its client
    # cannot grant credit, so the server paces it (0: unpaced, as fast as it is made).
    sse_lead: float = 1.0

    def __post_init__(self) -> None:
        if self.max_streams_per_connection < 1 or self.max_generations_per_peer < 1:
            msg = "max_streams_per_connection and max_generations_per_peer must be at least 1"
            raise ValueError(msg)
        if not 0 <= self.sse_lead <= MAX_SSE_LEAD:
            raise ValueError(f"sse_lead must be 0 to {MAX_SSE_LEAD:g} seconds")


class GenerationRefused(Exception):
    """A generation not started: its client already has as many as it may."""


def refused_origin(headers: Headers, config: McpHttpConfig) -> str | None:
    """Why a browser request may not be served, or None: no Origin (not a browser), or an
    origin whose host is allowed (the page this server serves, on a loopback name)."""
    origins = header_values(headers, "origin")
    if not origins or origin_allowed(origins[0], config):
        return None
    return f"Origin {origins[0]!r} is not allowed (see --allow-origin)"
