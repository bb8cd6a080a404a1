"""The servers under test, one module per system, each written the way its docs recommend.

Every WebSocket server answers the same endpoints (a query string carries the parameters):

- ``/push?n=N&size=S``: N binary messages of S bytes, as fast as the server allows.
- ``/tick?count=C&interval=I&size=S``: C binary messages of S bytes, one every I seconds;
  the first 8 bytes are ``time.monotonic_ns()`` (big-endian) taken just before the send.
- ``/bulk?interval=I``: 4 KiB binary messages without end, plus a text message every I
  seconds holding ``time.monotonic_ns()`` in decimal (the control message). diaproto alone
  also answers ``/bulk?credit=N``: the bulk stream starts with N bytes of credit and the client
  grants more with the wire protocol's ``{"type": "credit", ...}`` text message.
- ``/idle``: accept and hold the connection.

SSE servers answer ``GET /sse?n=N&size=S`` with N events of S bytes of data, then end.
"""

from __future__ import annotations

import struct
import time
from urllib.parse import parse_qs, urlsplit

BULK_SIZE = 4096
STAMP = struct.Struct(">Q")


def route(target: str) -> tuple[str, dict[str, float]]:
    """``/push?n=3`` -> ("push", {"n": 3.0})."""
    parts = urlsplit(target)
    query = {key: float(values[0]) for key, values in parse_qs(parts.query).items()}
    return parts.path.strip("/"), query


def stamped(size: int) -> bytes:
    """A payload of ``size`` bytes (at least 8) starting with the monotonic clock in ns."""
    return STAMP.pack(time.monotonic_ns()) + bytes(max(0, size - STAMP.size))


def control_text() -> str:
    return str(time.monotonic_ns())
