"""The scheduler: which stream's bytes go out next, and when a producer must wait.

It stands on its own (no server, client or MCP import), so an application that frames its
own bytes (an ASGI app, say) can use it for prioritization, batching and backpressure.
"""

from __future__ import annotations

from diaproto.scheduler._scheduler import (
    LINGERING_CLASSES,
    Outgoing,
    Policy,
    Priority,
    Scheduler,
)

__all__ = ["LINGERING_CLASSES", "Outgoing", "Policy", "Priority", "Scheduler"]
