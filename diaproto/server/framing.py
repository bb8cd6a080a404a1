"""Framing: turning a scheduler batch into the bytes of one transport write.

One framer per response kind. Each writes everything due in one call, so a batch is one
write; the WebSocket framer with the wire protocol also packs consecutive data chunks into
one binary message.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from functools import partial

from diaproto.errors import LocalProtocolError
from diaproto.scheduler import Outgoing
from diaproto.sse import SseEvent
from diaproto.wire import encode_records
from diaproto.wsframes import OP_BINARY, OP_TEXT, encode_frame

#: What the application may queue: bytes (data), str (text), or a ready SSE event.
Payload = bytes | str | SseEvent

Framer = Callable[[list[Outgoing[Payload]]], bytes]


def payload_size(payload: Payload) -> int:
    """The size a payload counts for in the budget (code points for text)."""
    if isinstance(payload, SseEvent):
        return len(payload.data) + 16
    return len(payload)


def websocket_framer(
    wire: bool, encode_message: Callable[[bytes | str], bytes] | None = None
) -> Framer:
    """bytes -> binary message (wire: data records, batched); str -> text message.

    ``encode_message`` frames one whole message; by default the fast unmasked encoder. With
    an extension (permessage-deflate) the server passes wsproto's, which compresses.
    """
    if encode_message is None:  # shared functions: no closure per connection
        return _frame_wire if wire else _frame_plain
    encode = encode_message

    def frame(batch: list[Outgoing[Payload]]) -> bytes:
        return _frame(batch, wire, encode)

    return frame


def _frame(
    batch: list[Outgoing[Payload]], wire: bool, encode: Callable[[bytes | str], bytes]
) -> bytes:
    out: list[bytes] = []
    records: list[tuple[int, int, bytes]] = []
    for item in batch:
        payload = item.payload
        if isinstance(payload, bytes):
            if wire:
                records.append((item.stream_id, item.seq, payload))
            else:
                out.append(encode(payload))
            continue
        if records:
            out.append(encode(encode_records(records)))
            records = []
        assert isinstance(payload, str)  # send() refuses SseEvent on a WebSocket
        out.append(encode(payload))
    if records:
        out.append(encode(encode_records(records)))
    return b"".join(out)


def _frame_wire(batch: list[Outgoing[Payload]]) -> bytes:
    return _frame(batch, True, _encode_plain)


#: The two header bytes of a final unmasked binary frame, by payload length (< 126).
_SMALL_BINARY_HEADERS = [bytes((0x80 | OP_BINARY, n)) for n in range(126)]


def _frame_plain(batch: list[Outgoing[Payload]]) -> bytes:
    """:func:`_frame` without the wire protocol or an extension: the hot path of small
    binary messages, with their headers from a table and joined once."""
    out: list[bytes] = []
    headers = _SMALL_BINARY_HEADERS
    for item in batch:
        payload = item.payload
        if isinstance(payload, bytes) and len(payload) < 126:
            out.append(headers[len(payload)])
            out.append(payload)
        else:
            assert not isinstance(payload, SseEvent)  # send() refuses SseEvent on a WebSocket
            out.append(_encode_plain(payload))
    return b"".join(out)


def _encode_plain(payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        return encode_frame(OP_TEXT, payload.encode())
    return encode_frame(OP_BINARY, payload)


def sse_frame(batch: list[Outgoing[Payload]], id_prefix: bytes = b"") -> bytes:
    """SseEvent -> as is; bytes -> a wire ``data`` event (base64, id = ``id_prefix`` + seq);
    str -> data."""
    out: list[bytes] = []
    for item in batch:
        payload = item.payload
        if isinstance(payload, SseEvent):
            out.append(payload.encode())
        elif isinstance(payload, bytes):
            # SseEvent(data=base64, event="data", id=prefix + seq).encode(), written out:
            # base64, the prefix (checked by sse_framer) and a number hold no line break.
            encoded = base64.b64encode(payload)
            out.append(b"id: %s%d\nevent: data\ndata: %s\n\n" % (id_prefix, item.seq, encoded))
        elif "\n" in payload or "\r" in payload:
            out.append(SseEvent(data=payload).encode())  # one data line per line
        else:
            out.append(b"data: %s\n\n" % payload.encode())
    return b"".join(out)


#: What an event id prefix may hold: no line break, no NUL (a browser ignores an id with
#: one), nothing a proxy or a log would mangle.
ID_PREFIX = re.compile(r"[A-Za-z0-9._~-]{0,64}")


def sse_framer(stamp: Callable[[SseEvent], SseEvent] | None = None, id_prefix: str = "") -> Framer:
    """:func:`sse_frame`, with ``stamp`` applied to each SseEvent as it is framed, and
    ``id_prefix`` before the sequence number in each ``data`` event's id.

    A stamp sees events in the order they leave, which is what resumable streams need: ids
    given there make "everything after id X" exact even when priorities reorder messages.
    A prefix names the history the sequence numbers belong to (an epoch): a client echoes
    it in ``Last-Event-ID``, so an id from another history is recognised as such.
    """
    if not ID_PREFIX.fullmatch(id_prefix):
        raise LocalProtocolError(
            "an SSE id prefix is at most 64 of A-Z a-z 0-9 . _ ~ - (no line break, no NUL)"
        )
    prefix = id_prefix.encode()
    if stamp is None:
        if not prefix:
            return sse_frame
        return partial(sse_frame, id_prefix=prefix)
    stamped_by = stamp

    def frame(batch: list[Outgoing[Payload]]) -> bytes:
        for item in batch:
            if isinstance(item.payload, SseEvent):
                item.payload = stamped_by(item.payload)
        return sse_frame(batch, prefix)

    return frame


def body_frame(batch: list[Outgoing[Payload]]) -> bytes:
    """A streamed HTTP body: the payloads back to back (text as UTF-8)."""
    return b"".join(
        item.payload if isinstance(item.payload, bytes) else str(item.payload).encode()
        for item in batch
    )
