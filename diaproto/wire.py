"""The diaproto wire protocol, version 1 (``diaproto.v1``): messages and their codec.

Control messages are JSON objects in WebSocket text messages; data chunks travel in binary
messages, each holding one or more records::

    record = stream_id:u32 | seq:u32 | length:u32 | payload[length]    (big-endian)

so one binary message can carry a batch of chunks from several streams. ``docs/protocol.md``
is the specification; ``diaproto/wire_vectors.json`` holds test vectors that every
implementation (this one, the JavaScript client) must pass.

As h11's events do, each message checks its fields when it is built and raises
:class:`LocalProtocolError` for one the peer would have to refuse, so encoding is pure
serialisation. Decoding builds the same classes from the peer's fields and answers such a
refusal as a :class:`WireError` instead.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

from diaproto.errors import LocalProtocolError, RemoteProtocolError
from diaproto.events import Event

SUBPROTOCOL = "diaproto.v1"
RECORD_HEADER = struct.Struct(">III")
MAX_ID = 0xFFFFFFFF


class ErrorCode(StrEnum):
    """Values of the ``code`` field of an ``error`` message."""

    BAD_MESSAGE = "bad_message"  # not JSON, not an object, or a field of the wrong type
    UNKNOWN_TYPE = "unknown_type"  # a ``type`` this version does not define
    UNKNOWN_STREAM = "unknown_stream"
    STREAM_EXISTS = "stream_exists"
    REPLAY_GAP = "replay_gap"  # resume asked for messages past the replay window
    SLOW_CONSUMER = "slow_consumer"
    INVALID_REQUEST = "invalid_request"  # well-formed, but the application refuses it
    BUSY = "busy"  # the server has no capacity for this stream now; try again later
    GOING_AWAY = "going_away"  # the server is shutting down (SSE's 1001); reconnect later
    LIMIT_EXCEEDED = "limit_exceeded"  # this client holds as many streams as it may
    GENERATION_LOST = "generation_lost"  # its producer stopped or died before the end
    INTERNAL = "internal"


class WireError(RemoteProtocolError):
    """A wire-protocol message we could not accept; answered with an ``error`` message.

    The connection stays open: the WebSocket framing is intact, only this message is bad.
    """

    def __init__(self, code: str, message: str, stream_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.stream_id = stream_id


# --- the checks messages run when built ---------------------------------------------------
# The messages name the JSON fields, which is what the peer's error answer must speak of.


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _check_count(value: object, name: str) -> None:
    if not _is_count(value):
        raise LocalProtocolError(f"'{name}' must be an integer in 0..2**32-1")


def _check_optional_count(value: object, name: str) -> None:
    if value is not None:
        _check_count(value, name)


def _check_str(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise LocalProtocolError(f"'{name}' must be a string")


def _check_optional_str(value: object, name: str) -> None:
    if value is not None:
        _check_str(value, name)


def _check_options(value: object) -> None:
    if not isinstance(value, dict):
        raise LocalProtocolError("'options' must be an object")
    try:  # NaN and Infinity are not JSON: the peer's parser would refuse them
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"'options' is not JSON: {exc}") from None


# --- client -> server --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenStream(Event):
    stream_id: int
    text: str
    voice: str | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    credit: int | None = None  # initial credit in bytes; absent: the stream is not credit-based

    def __post_init__(self) -> None:
        _check_count(self.stream_id, "stream")
        _check_str(self.text, "text")
        _check_optional_str(self.voice, "voice")
        _check_options(self.options)
        _check_optional_count(self.credit, "credit")


@dataclass(frozen=True, slots=True)
class CancelStream(Event):
    stream_id: int

    def __post_init__(self) -> None:
        _check_count(self.stream_id, "stream")


@dataclass(frozen=True, slots=True)
class GrantCredit(Event):
    stream_id: int
    nbytes: int

    def __post_init__(self) -> None:
        _check_count(self.stream_id, "stream")
        _check_count(self.nbytes, "bytes")


@dataclass(frozen=True, slots=True)
class ResumeStream(Event):
    stream_id: int
    after: int  # the last sequence number the client holds
    token: str | None = None  # the resume token the server gave in ``open``

    def __post_init__(self) -> None:
        _check_count(self.stream_id, "stream")
        _check_count(self.after, "after")
        _check_optional_str(self.token, "token")


# --- server -> client --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened(Event):
    stream_id: int
    token: str | None = None

    def __post_init__(self) -> None:
        _check_count(self.stream_id, "stream")
        _check_optional_str(self.token, "token")


# Not checked when built: only the decoder builds one, from u32 fields; encode_records
# checks the records it sends.
@dataclass(frozen=True, slots=True)
class DataChunk(Event):
    stream_id: int
    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnd(Event):
    stream_id: int
    last_seq: int

    def __post_init__(self) -> None:
        _check_count(self.stream_id, "stream")
        _check_count(self.last_seq, "seq")


@dataclass(frozen=True, slots=True)
class StreamError(Event):
    stream_id: int | None  # None: the error is about the connection as a whole
    code: str
    message: str = ""

    def __post_init__(self) -> None:
        _check_optional_count(self.stream_id, "stream")
        _check_str(self.code, "code")
        _check_str(self.message, "message")


ClientMessage = OpenStream | CancelStream | GrantCredit | ResumeStream
ServerControl = StreamOpened | StreamEnd | StreamError


# --- encoding ----------------------------------------------------------------------------


def encode_records(records: Iterable[tuple[int, int, bytes]]) -> bytes:
    """One binary message holding ``(stream_id, seq, payload)`` records in order."""
    parts: list[bytes] = []
    pack = RECORD_HEADER.pack
    for stream_id, seq, payload in records:
        try:
            parts.append(pack(stream_id, seq, len(payload)))
        except struct.error:
            raise LocalProtocolError(
                f"record ({stream_id}, {seq}, {len(payload)} bytes): stream id, sequence "
                "number and length must each fit in 0..2**32-1"
            ) from None
        parts.append(payload)
    return b"".join(parts)


def encode_message(message: ClientMessage | ServerControl) -> str:
    """The JSON text of a control message (keys in a fixed order, no spaces).

    The message checked its fields when it was built, so this cannot fail.
    """
    body: dict[str, Any]
    match message:
        case OpenStream():
            body = {"type": "open", "stream": message.stream_id, "text": message.text}
            if message.voice is not None:
                body["voice"] = message.voice
            if message.options:
                body["options"] = message.options
            if message.credit is not None:
                body["credit"] = message.credit
        case CancelStream():
            body = {"type": "cancel", "stream": message.stream_id}
        case GrantCredit():
            body = {"type": "credit", "stream": message.stream_id, "bytes": message.nbytes}
        case ResumeStream():
            body = {"type": "resume", "stream": message.stream_id, "after": message.after}
            if message.token is not None:
                body["token"] = message.token
        case StreamOpened():
            body = {"type": "open", "stream": message.stream_id}
            if message.token is not None:
                body["token"] = message.token
        case StreamEnd():
            body = {"type": "end", "stream": message.stream_id, "seq": message.last_seq}
        case _:  # StreamError, the last kind left (mypy checks the narrowing)
            body = {"type": "error", "stream": message.stream_id, "code": message.code}
            if message.message:
                body["message"] = message.message
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --- decoding ----------------------------------------------------------------------------


def decode_records(body: bytes | bytearray | memoryview) -> list[DataChunk]:
    """Split a binary message into its records; a truncated record is a :class:`WireError`."""
    chunks: list[DataChunk] = []
    view = memoryview(body)
    offset = 0
    end = len(body)
    header_size = RECORD_HEADER.size
    while offset < end:
        if end - offset < header_size:
            raise WireError(ErrorCode.BAD_MESSAGE, "truncated record header")
        stream_id, seq, length = RECORD_HEADER.unpack_from(view, offset)
        offset += header_size
        if end - offset < length:
            raise WireError(ErrorCode.BAD_MESSAGE, "record payload shorter than its length")
        chunks.append(DataChunk(stream_id, seq, bytes(view[offset : offset + length])))
        offset += length
    if not chunks:
        raise WireError(ErrorCode.BAD_MESSAGE, "empty binary message")
    return chunks


def decode_client_message(text: str) -> ClientMessage:
    """Parse a client's control message; every malformation is a :class:`WireError`."""
    body, kind = _load(text)
    with _refusal_is_the_peers(body):
        match kind:
            case "open":
                return OpenStream(
                    _field(body, "stream"),
                    _field(body, "text"),
                    _field(body, "voice"),
                    _field(body, "options", {}),
                    _field(body, "credit"),
                )
            case "cancel":
                return CancelStream(_field(body, "stream"))
            case "credit":
                return GrantCredit(_field(body, "stream"), _field(body, "bytes"))
            case "resume":
                return ResumeStream(
                    _field(body, "stream"), _field(body, "after"), _field(body, "token")
                )
    raise WireError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}", _maybe_id(body))


def decode_server_message(text: str) -> ServerControl:
    """Parse a server's control message (client side)."""
    body, kind = _load(text)
    with _refusal_is_the_peers(body):
        match kind:
            case "open":
                return StreamOpened(_field(body, "stream"), _field(body, "token"))
            case "end":
                return StreamEnd(_field(body, "stream"), _field(body, "seq"))
            case "error":
                # ``stream`` is null (or absent) for an error about the connection as a whole.
                return StreamError(
                    _field(body, "stream"), _field(body, "code"), _field(body, "message", "")
                )
    raise WireError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}", _maybe_id(body))


@contextmanager
def _refusal_is_the_peers(body: dict[str, Any]) -> Iterator[None]:
    """A message the peer's fields could not build is the peer's error (h11 does the same)."""
    try:
        yield
    except LocalProtocolError as exc:
        raise WireError(ErrorCode.BAD_MESSAGE, exc.message, _maybe_id(body)) from None


def _field(body: dict[str, Any], name: str, default: object = None) -> Any:
    """``body[name]``, or ``default`` where the field is absent or null; checked when built."""
    value = body.get(name)
    return default if value is None else value


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: valid JSON, but no double holds it and we could not resend it
        raise ValueError(f"number {text} is out of range")
    return value


def _load(text: str) -> tuple[dict[str, Any], str]:
    try:
        # Python's json accepts NaN and Infinity, which are not JSON (JSON.parse refuses them).
        body = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except ValueError as exc:  # not JSON, NaN/Infinity, 1e999, an integer of > 4300 digits
        raise WireError(ErrorCode.BAD_MESSAGE, f"not JSON: {exc}") from None
    except RecursionError:
        raise WireError(ErrorCode.BAD_MESSAGE, "JSON nested too deeply") from None
    if not isinstance(body, dict):
        raise WireError(ErrorCode.BAD_MESSAGE, "a message must be a JSON object")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise WireError(ErrorCode.BAD_MESSAGE, "'type' must be a string", _maybe_id(body))
    return body, kind


def _maybe_id(body: dict[str, Any]) -> int | None:
    """The ``stream`` of a message we refuse, when it is a valid id (for the error answer)."""
    value = body.get("stream")
    return value if _is_count(value) else None
