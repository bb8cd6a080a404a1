"""The scheduler: which stream's bytes go out next, and when a producer must wait.

It stands on its own (no server, client or MCP import), so an application that frames its
own bytes (an ASGI app, say) can use it for prioritization, batching and backpressure.
Its parts: the vocabulary (:class:`Priority`, :class:`Policy`, :class:`Outgoing`,
:class:`StreamOptions`), the byte budget (:mod:`diaproto.scheduler.budget`), fair shares and
batching (:mod:`diaproto.scheduler.fairness`), and :class:`Scheduler`, which composes them.
"""

from __future__ import annotations

from diaproto.scheduler._scheduler import Scheduler
from diaproto.scheduler._types import (
    LINGERING_CLASSES,
    Outgoing,
    Policy,
    Priority,
    StreamOptions,
)

__all__ = ["LINGERING_CLASSES", "Outgoing", "Policy", "Priority", "Scheduler", "StreamOptions"]
