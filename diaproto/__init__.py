"""diaproto: low-latency streaming of model output over WebSocket and SSE (sans-IO core)."""

from __future__ import annotations

__version__ = "0.1.0"
