"""What the core's tests share: a connection config without heartbeats, a client frame built
by hand, and what a connection hands out, read back."""

from __future__ import annotations

import struct

from diaproto.config import ConnectionConfig, Timeouts
from diaproto.events import ConnectionClosed, Event
from diaproto.runtime import Connection

NO_HEARTBEAT = Timeouts(ping_interval=None, ping_timeout=None, idle=None)

QUIET = ConnectionConfig(timeouts=NO_HEARTBEAT)


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """One client frame built by hand (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    key = b"\x11\x22\x33\x44"
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def drain(conn: Connection) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


def closed_events(events: list[Event]) -> list[ConnectionClosed]:
    return [e for e in events if isinstance(e, ConnectionClosed)]
