"""Targets for the pure codecs: the wire protocol (text and binary) and the SSE parser."""

from __future__ import annotations

import json
from pathlib import Path

import diaproto.wire
from diaproto.errors import RemoteProtocolError
from diaproto.events import SseMessage
from diaproto.sse import SseEvent, SseParser
from diaproto.wire import (
    decode_client_message,
    decode_records,
    decode_server_message,
    encode_message,
    encode_records,
)
from fuzz.harness import target


def _vector_seeds(frame: str) -> list[bytes]:
    path = Path(diaproto.wire.__file__).with_name("wire_vectors.json")
    vectors = json.loads(path.read_text(encoding="utf-8"))["vectors"]
    if frame == "binary":
        return [bytes.fromhex(v["hex"]) for v in vectors if v["frame"] == "binary"]
    return [v["text"].encode() for v in vectors if v["frame"] == "text"]


@target("wire_text", seeds=_vector_seeds("text"))
def wire_text(data: bytes) -> None:
    """Both control-message decoders; what decodes must re-encode to the same message."""
    text = data.decode("utf-8", errors="replace")
    for decode in (decode_client_message, decode_server_message):
        try:
            message = decode(text)
        except RemoteProtocolError:
            continue
        again = decode(encode_message(message))
        assert again == message, (message, again)


@target("wire_records", seeds=_vector_seeds("binary"))
def wire_records(data: bytes) -> None:
    """The record decoder; what decodes must re-encode to exactly the input."""
    chunks = decode_records(data)
    encoded = encode_records((c.stream_id, c.seq, c.data) for c in chunks)
    assert encoded == data, "records decoded from bytes must re-encode to the same bytes"


_SSE_SEEDS = [
    b"\xef\xbb\xbfdata: a\n\n",
    b"id: 1\r\nevent: data\r\nretry: 2000\r\ndata: AAE=\r\n\r\n",
    b": comment\rdata: x\rdata\r\rid: 2\x003\n\n",
    SseEvent("a\nb\r\nc\rd", event="end", id="9", retry=5).encode(),
    b"retry: 18446744073709551616\nid\ndata:  two\n\n",
]


def _run_sse(chunks: list[bytes]) -> tuple[list[SseMessage], str | None, int | None, bool]:
    parser = SseParser(max_line=64, max_event=256)
    failed = False
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except RemoteProtocolError:
        failed = True
    events = []
    while (event := parser.next_event()) is not None:
        events.append(event)
    return events, parser.last_event_id, parser.retry, failed


@target("sse_parser", seeds=[bytes([n]) + s for n, s in enumerate(_SSE_SEEDS)])
def sse_parser(data: bytes) -> None:
    """The SSE parser fed the input in two pieces (the first byte picks the cut), checked
    against the same input fed whole: the same events, ids, retry and limit errors."""
    if not data:
        return
    body = data[1:]
    cut = data[0] * (len(body) + 1) // 256  # the first byte picks a proportional point
    split = _run_sse([body[:cut], body[cut:]])
    whole = _run_sse([body])
    if split[3] or whole[3]:
        # A limit broke: both must say so, after the same events.
        assert split[3] == whole[3] and split[0] == whole[0], (split, whole)
        raise RemoteProtocolError("SSE limit (expected)")
    assert split == whole, (split, whole)
