"""WebSocket helpers beside wsproto: fast server framing and message reassembly with a limit."""

from __future__ import annotations

import struct

from wsproto.events import BytesMessage, TextMessage

from diaproto.errors import RemoteProtocolError

OP_TEXT = 0x1
OP_BINARY = 0x2
CLOSE_MESSAGE_TOO_BIG = 1009

_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (server to client, no extension negotiated).

    wsproto builds the same bytes; doing it here skips its per-frame Python machinery on
    the hot path, which the benchmarks show matters for small messages.
    """
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return _HEADER_16.pack(first, 126, length) + payload
    return _HEADER_64.pack(first, 127, length) + payload


class MessageAssembler:
    """Joins wsproto's partial message events into whole messages, refusing oversize ones.

    The size counts bytes for binary messages and code points for text (wsproto has
    already decoded and validated the UTF-8), so memory stays bounded either way.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: list[bytes] | list[str] = []
        self._size = 0

    def feed(self, event: TextMessage | BytesMessage) -> bytes | str | None:
        """Add a fragment; return the whole message once it is finished."""
        data = event.data
        self._size += len(data)
        if self._size > self.max_size:
            raise RemoteProtocolError(
                f"message larger than {self.max_size}", close_code=CLOSE_MESSAGE_TOO_BIG
            )
        if event.message_finished and not self._parts:
            self._size = 0
            return bytes(data) if isinstance(data, bytearray) else data
        self._parts.append(data)  # type: ignore[arg-type]
        if not event.message_finished:
            return None
        parts, self._parts, self._size = self._parts, [], 0
        if isinstance(data, str):
            return "".join(parts)  # type: ignore[arg-type]
        return b"".join(parts)  # type: ignore[arg-type]
