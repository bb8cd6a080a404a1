"""What the server says about itself, by revision: capabilities, identity, caching hints.

Handshake revisions say it once, in the ``initialize`` result. 2026-07-28 has no handshake:
``server/discover`` says it, every result names the server, and results carry caching
hints (SEP-2549).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diaproto.mcp.features import Features
from diaproto.mcp.protocol import META_SERVER_INFO, MODERN_VERSIONS
from diaproto.mcp.tasks import TASKS_EXTENSION

CACHE_TTL_MS = 60_000  # how long a 2026-07-28 client may reuse discover and the lists
#: 2026-07-28 results that carry caching hints (SEP-2549). The lists and discover are fixed
#: for the server's life; what the application answers (resources/read) is stamped "do not
#: reuse" unless it says otherwise.
APPLICATION_CACHEABLE = ("resources/read",)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    version: str
    instructions: str | None = None

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}


def server_capabilities(features: Features, *, modern: bool) -> dict[str, Any]:
    declared: dict[str, Any] = {"tools": {"listChanged": False}, "logging": {}}
    declared.update(features.capabilities(subscribe=not modern))
    if features.tasks and modern:
        declared["extensions"] = {TASKS_EXTENSION: {}}
    return declared


def shared_cache_hints(*, modern: bool) -> dict[str, Any]:
    """2026-07-28 caching directives for what is fixed for the server's life and the same
    for every client (the lists, discover)."""
    return {"ttlMs": CACHE_TTL_MS, "cacheScope": "public"} if modern else {}


def not_cached(result: dict[str, Any]) -> dict[str, Any]:
    """An application's answer, stamped "do not reuse" unless it says otherwise."""
    return {"ttlMs": 0, "cacheScope": "private", **result}


def initialize_result(
    info: ServerInfo, protocol_version: str, capabilities: dict[str, Any]
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "protocolVersion": protocol_version,
        "capabilities": capabilities,
        "serverInfo": info.identity(),
    }
    if info.instructions is not None:
        result["instructions"] = info.instructions
    return result


def discover_result(info: ServerInfo, capabilities: dict[str, Any]) -> dict[str, Any]:
    """``server/discover`` (2026-07-28 only)."""
    result: dict[str, Any] = {
        "supportedVersions": list(MODERN_VERSIONS),
        "capabilities": capabilities,
        **shared_cache_hints(modern=True),
    }
    if info.instructions is not None:
        result["instructions"] = info.instructions
    return result


def stamped(info: ServerInfo, result: dict[str, Any]) -> dict[str, Any]:
    """2026-07-28: every result says it is complete and who answered."""
    meta = {**result.get("_meta", {}), META_SERVER_INFO: info.identity()}
    return {"resultType": "complete", **result, "_meta": meta}
