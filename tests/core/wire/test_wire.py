"""The wire codec against the language-neutral vectors, plus properties of the codec.

The vectors (``diaproto/wire_vectors.json``) are written by hand from ``docs/protocol.md``;
a JavaScript client runs the same file. Messages in the vectors use the canonical form the
spec defines (wire field names, every field of the kind present); ``_to_canonical`` and
``_from_canonical`` translate between that form and the Python dataclasses.
"""

from __future__ import annotations

import json
import math
import re
import string
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diaproto.wire
from diaproto.errors import LocalProtocolError, RemoteProtocolError
from diaproto.wire import (
    MAX_ID,
    SUBPROTOCOL,
    CancelStream,
    ClientMessage,
    DataChunk,
    ErrorCode,
    GrantCredit,
    OpenStream,
    ResumeStream,
    ServerControl,
    StreamEnd,
    StreamError,
    StreamOpened,
    WireError,
    decode_client_message,
    decode_records,
    decode_server_message,
    encode_message,
    encode_records,
)

VECTORS_PATH = Path(diaproto.wire.__file__).with_name("wire_vectors.json")
VECTORS_FILE: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = VECTORS_FILE["vectors"]

C2S = "client_to_server"
S2C = "server_to_client"

AnyMessage = ClientMessage | ServerControl | DataChunk

# --- canonical form <-> dataclasses ------------------------------------------------------


def _from_canonical(direction: str, m: dict[str, Any]) -> AnyMessage:
    kind = m["type"]
    if direction == C2S:
        match kind:
            case "open":
                return OpenStream(m["stream"], m["text"], m["voice"], m["options"], m["credit"])
            case "cancel":
                return CancelStream(m["stream"])
            case "credit":
                return GrantCredit(m["stream"], m["bytes"])
            case "resume":
                return ResumeStream(m["stream"], m["after"], m["token"])
    else:
        match kind:
            case "open":
                return StreamOpened(m["stream"], m["token"])
            case "end":
                return StreamEnd(m["stream"], m["seq"])
            case "error":
                return StreamError(m["stream"], m["code"], m["message"])
            case "data":
                return DataChunk(m["stream"], m["seq"], bytes.fromhex(m["hex"]))
    raise AssertionError(f"vector file names an unknown kind: {direction} {kind}")


def _to_canonical(message: AnyMessage) -> dict[str, Any]:
    match message:
        case OpenStream():
            return {
                "type": "open",
                "stream": message.stream_id,
                "text": message.text,
                "voice": message.voice,
                "options": message.options,
                "credit": message.credit,
            }
        case CancelStream():
            return {"type": "cancel", "stream": message.stream_id}
        case GrantCredit():
            return {"type": "credit", "stream": message.stream_id, "bytes": message.nbytes}
        case ResumeStream():
            return {
                "type": "resume",
                "stream": message.stream_id,
                "after": message.after,
                "token": message.token,
            }
        case StreamOpened():
            return {"type": "open", "stream": message.stream_id, "token": message.token}
        case StreamEnd():
            return {"type": "end", "stream": message.stream_id, "seq": message.last_seq}
        case StreamError():
            return {
                "type": "error",
                "stream": message.stream_id,
                "code": message.code,
                "message": message.message,
            }
        case DataChunk():
            return {
                "type": "data",
                "stream": message.stream_id,
                "seq": message.seq,
                "hex": message.data.hex(),
            }
    raise AssertionError(message)


def _decode(vector: dict[str, Any]) -> list[AnyMessage]:
    if vector["frame"] == "binary":
        assert vector["direction"] == S2C, "only servers send binary messages"
        return list(decode_records(bytes.fromhex(vector["hex"])))
    if vector["direction"] == C2S:
        return [decode_client_message(vector["text"])]
    return [decode_server_message(vector["text"])]


def _by_op(op: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in VECTORS if v["op"] == op]


# --- the vector file itself --------------------------------------------------------------

CANONICAL_FIELDS = {
    (C2S, "open"): ["type", "stream", "text", "voice", "options", "credit"],
    (C2S, "cancel"): ["type", "stream"],
    (C2S, "credit"): ["type", "stream", "bytes"],
    (C2S, "resume"): ["type", "stream", "after", "token"],
    (S2C, "open"): ["type", "stream", "token"],
    (S2C, "end"): ["type", "stream", "seq"],
    (S2C, "error"): ["type", "stream", "code", "message"],
    (S2C, "data"): ["type", "stream", "seq", "hex"],
}


def _messages_of(vector: dict[str, Any]) -> list[dict[str, Any]]:
    if vector["op"] == "encode":
        return list(vector["messages"])
    return list(vector["expect"].get("messages", []))


def test_vector_file_shape() -> None:
    assert VECTORS_FILE["version"] == 1
    assert VECTORS_FILE["protocol"] == SUBPROTOCOL
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names)), "vector names must be unique"
    for v in VECTORS:
        assert v["op"] in ("decode", "encode")
        assert v["direction"] in (C2S, S2C)
        assert v["frame"] in ("text", "binary")
        body = "hex" if v["frame"] == "binary" else "text"
        allowed = {"name", "op", "direction", "frame", body}
        allowed.add("expect" if v["op"] == "decode" else "messages")
        assert set(v) == allowed, v["name"]
        if body == "hex":
            assert v["hex"] == v["hex"].lower() and len(v["hex"]) % 2 == 0, v["name"]
        if v["op"] == "decode":
            expect = v["expect"]
            assert set(expect) in ({"messages"}, {"error"}, {"error", "stream"}), v["name"]
        for m in _messages_of(v):
            assert list(m) == CANONICAL_FIELDS[v["direction"], m["type"]], v["name"]


def test_vectors_cover_every_kind_both_ways() -> None:
    decoded = {
        (v["direction"], m["type"]) for v in VECTORS if v["op"] == "decode" for m in _messages_of(v)
    }
    encoded = {
        (v["direction"], m["type"]) for v in VECTORS if v["op"] == "encode" for m in _messages_of(v)
    }
    assert decoded == set(CANONICAL_FIELDS)
    assert encoded == set(CANONICAL_FIELDS)
    errors = {v["expect"].get("error") for v in VECTORS if v["op"] == "decode"} - {None}
    assert errors == {ErrorCode.BAD_MESSAGE, ErrorCode.UNKNOWN_TYPE}


# --- running the vectors -----------------------------------------------------------------


@pytest.mark.parametrize("vector", _by_op("decode"))
def test_decode_vector(vector: dict[str, Any]) -> None:
    expect = vector["expect"]
    if "error" in expect:
        with pytest.raises(WireError) as info:
            _decode(vector)
        assert info.value.code == expect["error"]
        if "stream" in expect:
            assert info.value.stream_id == expect["stream"]
    else:
        got = [_to_canonical(m) for m in _decode(vector)]
        assert got == expect["messages"]


@pytest.mark.parametrize("vector", _by_op("encode"))
def test_encode_vector(vector: dict[str, Any]) -> None:
    messages = [_from_canonical(vector["direction"], m) for m in vector["messages"]]
    if vector["frame"] == "binary":
        records = []
        for m in messages:
            assert isinstance(m, DataChunk)
            records.append((m.stream_id, m.seq, m.data))
        assert encode_records(records).hex() == vector["hex"]
    else:
        (message,) = messages
        assert not isinstance(message, DataChunk)
        assert encode_message(message) == vector["text"]
    # Every encode vector is a decode vector too: the canonical text means those messages.
    assert [_to_canonical(m) for m in _decode(vector)] == vector["messages"]


# --- errors and encoder refusals ---------------------------------------------------------


def test_wire_error_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_client_message("{")
    assert isinstance(info.value, WireError)
    assert info.value.code == ErrorCode.BAD_MESSAGE
    assert info.value.stream_id is None


def test_deeply_nested_json_is_bad_message() -> None:
    with pytest.raises(WireError) as info:
        decode_client_message("[" * 200_000)
    assert info.value.code == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"open","stream":1,"text":"x","options":{"big":1e999}}',
        '{"type":"open","stream":1,"text":"x","options":{"nan":-Infinity}}',
        '{"type":"cancel","stream":1,"n":' + "9" * 5000 + "}",
    ],
)
def test_json_python_would_accept_but_cannot_round_trip(text: str) -> None:
    with pytest.raises(WireError) as info:
        decode_client_message(text)
    assert info.value.code == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize(
    "records",
    [
        [(MAX_ID + 1, 1, b"")],
        [(1, MAX_ID + 1, b"")],
        [(-1, 1, b"")],
        [(1, 1, b"ok"), (1, -2, b"")],
    ],
)
def test_encode_records_refuses_out_of_range(records: list[tuple[int, int, bytes]]) -> None:
    with pytest.raises(LocalProtocolError):
        encode_records(records)


# Built inside the test: a message the peer must reject cannot be built (h11's events do the same).
REFUSED_AT_CONSTRUCTION: dict[str, Callable[[], ClientMessage | ServerControl]] = {
    "end: stream -1": lambda: StreamEnd(-1, 0),
    "end: seq 2**32": lambda: StreamEnd(1, MAX_ID + 1),
    "open: stream 2**32": lambda: StreamOpened(MAX_ID + 1),
    "open: token 5": lambda: StreamOpened(1, 5),  # type: ignore[arg-type]
    "error: stream -5": lambda: StreamError(-5, ErrorCode.INTERNAL),
    "error: code None": lambda: StreamError(1, None),  # type: ignore[arg-type]
    "error: message None": lambda: StreamError(1, ErrorCode.INTERNAL, None),  # type: ignore[arg-type]
    "open: credit -1": lambda: OpenStream(1, "x", credit=-1),
    "open: text b'x'": lambda: OpenStream(1, b"x"),  # type: ignore[arg-type]
    "open: voice 1": lambda: OpenStream(1, "x", voice=1),  # type: ignore[arg-type]
    "open: options []": lambda: OpenStream(1, "x", options=[]),  # type: ignore[arg-type]
    "credit: bytes 2**32": lambda: GrantCredit(1, MAX_ID + 1),
    "credit: bytes -5": lambda: GrantCredit(1, -5),
    "resume: after -1": lambda: ResumeStream(1, -1),
    "resume: token 1": lambda: ResumeStream(1, 0, 1),  # type: ignore[arg-type]
    "cancel: stream True": lambda: CancelStream(True),
    "open: options NaN": lambda: OpenStream(1, "x", options={"x": math.nan}),
    "open: options inf": lambda: OpenStream(1, "x", options={"x": math.inf}),
    "open: options object()": lambda: OpenStream(1, "x", options={"x": object()}),
}


@pytest.mark.parametrize("build", REFUSED_AT_CONSTRUCTION.values(), ids=REFUSED_AT_CONSTRUCTION)
def test_a_message_the_peer_must_reject_cannot_be_built(
    build: Callable[[], ClientMessage | ServerControl],
) -> None:
    with pytest.raises(LocalProtocolError):
        build()


def test_options_nested_past_the_recursion_limit_are_refused() -> None:
    options: dict[str, Any] = {}
    for _ in range(sys.getrecursionlimit() + 10):
        options = {"x": options}
    with pytest.raises(LocalProtocolError, match="'options' is not JSON"):
        OpenStream(1, "x", options=options)


def test_empty_records_list_encodes_to_an_empty_message_the_decoder_refuses() -> None:
    assert encode_records([]) == b""
    with pytest.raises(WireError):
        decode_records(b"")


def test_decode_records_accepts_bytearray_and_memoryview() -> None:
    raw = bytes.fromhex("000000010000000200000001ff")
    expected = [DataChunk(1, 2, b"\xff")]
    assert decode_records(bytearray(raw)) == expected
    assert decode_records(memoryview(raw)) == expected


# --- properties --------------------------------------------------------------------------

ids = st.integers(0, MAX_ID)
texts = st.text()  # no lone surrogates: a str holding one cannot be sent as UTF-8
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
options = st.dictionaries(texts, json_values, max_size=4)

client_messages: st.SearchStrategy[ClientMessage] = st.one_of(
    st.builds(
        OpenStream,
        ids,
        texts,
        st.none() | texts,
        options,
        st.none() | ids,
    ),
    st.builds(CancelStream, ids),
    st.builds(GrantCredit, ids, ids),
    st.builds(ResumeStream, ids, ids, st.none() | texts),
)
server_messages: st.SearchStrategy[ServerControl] = st.one_of(
    st.builds(StreamOpened, ids, st.none() | texts),
    st.builds(StreamEnd, ids, ids),
    st.builds(StreamError, st.none() | ids, texts, texts),
)
records = st.lists(st.tuples(ids, ids, st.binary(max_size=64)), max_size=8)


@given(client_messages)
def test_client_message_round_trip(message: ClientMessage) -> None:
    text = encode_message(message)
    text.encode("utf-8")  # sendable as a WebSocket text message
    decoded = decode_client_message(text)
    assert decoded == message
    assert _to_canonical(decoded) == _to_canonical(message)  # options compare here
    assert encode_message(decoded) == text


@given(server_messages)
def test_server_message_round_trip(message: ServerControl) -> None:
    text = encode_message(message)
    text.encode("utf-8")
    decoded = decode_server_message(text)
    assert decoded == message
    assert encode_message(decoded) == text


@given(client_messages | server_messages)
def test_encoding_is_canonical_json(message: ClientMessage | ServerControl) -> None:
    text = encode_message(message)
    body = json.loads(text)
    # No insignificant whitespace: re-serialising compactly changes nothing.
    assert json.dumps(body, separators=(",", ":"), ensure_ascii=False) == text
    assert next(iter(body)) == "type"


@given(records)
def test_records_round_trip(recs: list[tuple[int, int, bytes]]) -> None:
    body = encode_records(recs)
    assert len(body) == sum(12 + len(p) for _, _, p in recs)
    if recs:
        assert decode_records(body) == [DataChunk(s, q, p) for s, q, p in recs]


@given(records, records)
def test_records_concatenate(
    a: list[tuple[int, int, bytes]], b: list[tuple[int, int, bytes]]
) -> None:
    joined = encode_records(a) + encode_records(b)
    assert joined == encode_records(a + b)
    if a or b:
        assert decode_records(joined) == decode_records(encode_records(a + b))


@given(records.filter(bool), st.data())
def test_records_split(recs: list[tuple[int, int, bytes]], data: st.DataObject) -> None:
    """A prefix of a batch decodes only when it ends on a record boundary."""
    body = encode_records(recs)
    cut = data.draw(st.integers(1, len(body)))
    boundaries = {sum(12 + len(p) for _, _, p in recs[:k]): k for k in range(1, len(recs) + 1)}
    if cut in boundaries:
        k = boundaries[cut]
        assert decode_records(body[:cut]) == [DataChunk(s, q, p) for s, q, p in recs[:k]]
    else:
        with pytest.raises(WireError) as info:
            decode_records(body[:cut])
        assert info.value.code == ErrorCode.BAD_MESSAGE


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_decode_records_of_arbitrary_bytes(body: bytes) -> None:
    try:
        chunks = decode_records(body)
    except WireError as exc:
        assert exc.code == ErrorCode.BAD_MESSAGE
    else:
        # Whatever decodes re-encodes to exactly the same bytes: the format has no slack.
        assert encode_records((c.stream_id, c.seq, c.data) for c in chunks) == body


def _decode_both(text: str) -> None:
    for decode in (decode_client_message, decode_server_message):
        try:
            message = decode(text)
        except WireError as exc:
            assert exc.code in (ErrorCode.BAD_MESSAGE, ErrorCode.UNKNOWN_TYPE)
            assert exc.stream_id is None or 0 <= exc.stream_id <= MAX_ID
        else:
            # What decodes re-encodes, and the re-encoding means the same message.
            assert decode(encode_message(message)) == message


@given(st.text())
def test_decode_of_arbitrary_text(text: str) -> None:
    _decode_both(text)


@given(st.binary())
def test_decode_of_arbitrary_utf8_bytes(raw: bytes) -> None:
    _decode_both(raw.decode("utf-8", errors="replace"))


FIELD_NAMES = ["type", "stream", "text", "voice", "options", "credit", "bytes", "after"]
FIELD_NAMES += ["token", "seq", "code", "message"]
TYPES = ["open", "cancel", "credit", "resume", "end", "error", "data", "Open", ""]


@given(
    st.dictionaries(
        st.sampled_from(FIELD_NAMES) | st.text(string.ascii_lowercase, max_size=3),
        json_values | st.sampled_from(TYPES) | st.integers(-1, MAX_ID + 1),
    ),
    st.sampled_from(TYPES) | st.none(),
)
def test_decode_of_near_miss_objects(body: dict[str, Any], kind: str | None) -> None:
    """Objects built from the right field names with arbitrary values: the codec's paths."""
    if kind is not None:
        body["type"] = kind
    _decode_both(json.dumps(body))


# --- the specification -------------------------------------------------------------------

PROTOCOL_MD = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def test_protocol_doc_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PROTOCOL_MD.read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(PROTOCOL_MD), "exec"), {})


def test_protocol_doc_lists_every_error_code() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    codes = {v for k, v in vars(ErrorCode).items() if k.isupper()}
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    assert codes <= documented
