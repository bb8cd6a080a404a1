"""Tools for users' own tests: a fake clock and in-memory loopback pairs.

``diaproto.testing.strategies`` adds hypothesis strategies (it needs hypothesis installed).
"""

from __future__ import annotations

from diaproto.testing.clock import FakeClock
from diaproto.testing.loopback import Loopback, sse_pair, websocket_pair

__all__ = ["FakeClock", "Loopback", "sse_pair", "websocket_pair"]
