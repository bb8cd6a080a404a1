"""WebSocket helpers beside wsproto: fast server framing, message reassembly with a limit,
and permessage-deflate with a bounded inflater."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.events import BytesMessage, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from diaproto.errors import CloseCode, RemoteProtocolError

OP_TEXT = 0x1
OP_BINARY = 0x2

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

    __slots__ = ("_parts", "_size", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: list[bytes] | list[str] = []
        self._size = 0

    @property
    def pending(self) -> int:
        """Bytes (or code points) of the unfinished message held so far."""
        return self._size

    def feed(self, event: TextMessage | BytesMessage) -> bytes | str | None:
        """Add a fragment; return the whole message once it is finished."""
        data = event.data
        self._size += len(data)
        if self._size > self.max_size:
            raise RemoteProtocolError(
                f"message larger than {self.max_size}", close_code=CloseCode.MESSAGE_TOO_BIG
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


def wsproto_encoder(ws: WsConnection) -> Callable[[bytes | str], bytes]:
    """One whole message through wsproto: the framing to use when an extension is active.

    After the peer's EOF wsproto is closed (the core learns it on its next event): what was
    still queued is dropped, as it would be on the wire.
    """

    def encode(payload: bytes | str) -> bytes:
        if ws.state is not WsState.OPEN:
            return b""
        if isinstance(payload, str):
            return ws.send(TextMessage(data=payload))
        return ws.send(BytesMessage(data=payload))

    return encode


class BoundedPerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate (RFC 7692) with the inflated size of a message bounded.

    wsproto inflates a frame's payload whole: a few KiB of compressed input could make it
    hold gigabytes before :class:`MessageAssembler` sees a byte. Here a message inflates to at
    most its limit plus one byte (four bytes per allowed code point for text, which the
    assembler counts in code points); beyond it the connection fails with 1009. Negotiation
    and compression are wsproto's; only the inbound side is replaced.
    """

    def __init__(self, max_message_bytes: int) -> None:
        super().__init__()
        self.max_message_bytes = max_message_bytes
        self._inflater: zlib._Decompress | None = None
        self._in_message = False  # a data message is in progress
        self._in_control = False  # the current frame is a control frame
        self._compressed = False  # the current message has RSV1 (first frame)
        self._limit = max_message_bytes
        self._inflated = 0

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR
        self._in_control = opcode.iscontrol()
        if opcode in (Opcode.TEXT, Opcode.BINARY):  # (called again if the header was split)
            self._in_message = True
            self._compressed = rsv.rsv1
            self._inflated = 0
            self._limit = self.max_message_bytes * (4 if opcode is Opcode.TEXT else 1)
            if rsv.rsv1 and self._inflater is None:
                bits = self.server_max_window_bits if proto.client else self.client_max_window_bits
                self._inflater = zlib.decompressobj(-bits)
        return RsvBits(True, False, False)

    def _inflating(self) -> bool:
        return self._in_message and self._compressed and not self._in_control

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inflating():
            return data
        assert self._inflater is not None
        try:
            out = self._inflater.decompress(data, self._limit - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._limit:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not fin or not self._inflating():
            if fin and not self._in_control:
                self._in_message = False
            return None
        assert self._inflater is not None
        self._in_message = False
        try:
            # The tail RFC 7692 strips; flushing it yields at most the few bytes still held.
            out = self._inflater.decompress(b"\x00\x00\xff\xff") + self._inflater.flush()
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        no_takeover = (
            self.server_no_context_takeover if proto.client else self.client_no_context_takeover
        )
        if no_takeover:
            self._inflater = None
        return out


_DEFLATE_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_DEFLATE_BITS = ("server_max_window_bits", "client_max_window_bits")


def negotiate_deflate(
    header_values: list[str], max_message_bytes: int
) -> tuple[BoundedPerMessageDeflate, str] | None:
    """Accept the client's first acceptable permessage-deflate offer.

    ``header_values`` are the request's ``Sec-WebSocket-Extensions`` values. Returns the
    extension, ready for a wsproto connection, and the response header's value; None when
    nothing was offered or no offer is acceptable (RFC 7692 5.1: an unknown parameter, a
    repeated one or a bad value declines that offer). Never raises for what the peer sent.
    """
    for offer in (o for value in header_values for o in value.split(",")):
        name, *params = (part.strip() for part in offer.split(";"))
        if name.lower() != PerMessageDeflate.name:
            continue
        normal = _normal_deflate_params(params)
        if normal is None:
            continue
        extension = BoundedPerMessageDeflate(max_message_bytes)
        accepted = extension.accept("; ".join([PerMessageDeflate.name, *normal]))
        if isinstance(accepted, str):  # wsproto declines window bits it cannot honour (8)
            return extension, "; ".join(p for p in (PerMessageDeflate.name, accepted) if p)
    return None


def _normal_deflate_params(params: list[str]) -> list[str] | None:
    seen: set[str] = set()
    normal: list[str] = []
    for param in params:
        key, sep, raw = (x.strip() for x in param.partition("="))
        value = raw.strip('"')
        if key in seen:
            return None
        seen.add(key)
        if key in _DEFLATE_FLAGS and not sep:
            normal.append(key)
        elif key in _DEFLATE_BITS and value.isascii() and value.isdigit():
            if not 8 <= int(value) <= 15:
                return None
            normal.append(f"{key}={int(value)}")
        elif key == "client_max_window_bits" and not sep:  # "I can honour one you pick"
            normal.append(key)
        else:
            return None
    return normal
