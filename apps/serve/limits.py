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

__all__ = ["GenerationRefused", "ServiceLimits", "refused_origin"]


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """Per-client bounds of ``diaproto serve`` (``--max-streams-per-connection``,
    ``--max-generations-per-peer``)."""

    max_streams_per_connection: int = 16
    max_generations_per_peer: int = 16

    def __post_init__(self) -> None:
        if self.max_streams_per_connection < 1 or self.max_generations_per_peer < 1:
            msg = "max_streams_per_connection and max_generations_per_peer must be at least 1"
            raise ValueError(msg)


class GenerationRefused(Exception):
    """A generation not started: its client already has as many as it may."""


def refused_origin(headers: Headers, config: McpHttpConfig) -> str | None:
    """Why a browser request may not be served, or None: no Origin (not a browser), or an
    origin whose host is allowed (the page this server serves, on a loopback name)."""
    origins = header_values(headers, "origin")
    if not origins or origin_allowed(origins[0], config):
        return None
    return f"Origin {origins[0]!r} is not allowed (see --allow-origin)"
