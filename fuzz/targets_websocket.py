"""Targets for the WebSocket connections: arbitrary bytes as frames into an open server and an
open client (both past the handshake, with ``diaproto.v1``). Nothing may escape but
RemoteProtocolError; in fact nothing should escape at all, since peer garbage becomes events."""

from __future__ import annotations

import struct

from wsproto import ConnectionType, WSConnection
from wsproto.events import Request as WsRequest

from diaproto.client import ClientState, WebSocketClientConnection
from diaproto.config import ConnectionConfig, Limits
from diaproto.events import Event, WebSocketRequest
from diaproto.server import ServerConnection, State
from diaproto.wire import (
    CancelStream,
    GrantCredit,
    OpenStream,
    ResumeStream,
    StreamEnd,
    StreamError,
    StreamOpened,
    encode_message,
    encode_records,
)
from diaproto.wsframes import encode_frame
from fuzz.harness import target

# A small message limit, so that the fuzzer reaches it.
_CONFIG = ConnectionConfig(limits=Limits(max_message_bytes=4096))
_KEY = b"\x37\xfa\x21\x3d"


def _masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    else:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    return header + _KEY + bytes(b ^ _KEY[i % 4] for i, b in enumerate(payload))


def _unmasked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    if fin:
        return encode_frame(opcode, payload)
    return bytes((opcode, len(payload))) + payload  # short payloads only


def _text(message: OpenStream | CancelStream | GrantCredit | ResumeStream) -> bytes:
    return encode_message(message).encode()


_SERVER_SEEDS = [
    _masked(0x1, _text(OpenStream(1, "hello", voice="S1", credit=64))),
    _masked(0x1, _text(CancelStream(1))) + _masked(0x1, _text(GrantCredit(1, 100))),
    _masked(0x1, _text(ResumeStream(1, 0, "tok"))),
    _masked(0x1, b'{"type":"op', fin=False) + _masked(0x9, b"ping") + _masked(0x0, b'en"}'),
    _masked(0x2, b"\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01x"),
    _masked(0x1, b"not json") + _masked(0xA, b"pong"),
    _masked(0x8, struct.pack("!H", 1000) + b"bye"),
    _masked(0x1, b"\xff\xfe"),
]


def _drive_server(server: ServerConnection, now: float) -> list[Event]:
    """What an application would do: drain events, answer opens, send what is due."""
    events: list[Event] = []
    while (event := server.next_event()) is not None:
        events.append(event)
        if server.state is not State.WEBSOCKET:
            continue
        if isinstance(event, OpenStream) and not server.scheduler.has_stream(event.stream_id):
            server.open_stream(event.stream_id, now, credit=event.credit)
            server.send(event.stream_id, b"chunk", now)
        elif isinstance(event, ResumeStream) and server.scheduler.has_stream(event.stream_id):
            server.fail_stream(event.stream_id, "invalid_request", "no replay", now)
    server.data_to_send(now)
    return events


def _open_server() -> ServerConnection:
    server = ServerConnection(0.0, _CONFIG)
    client = WSConnection(ConnectionType.CLIENT)
    request = WsRequest(host="fuzz", target="/", subprotocols=["diaproto.v1"])
    server.receive_data(client.send(request), 0.0)
    event = server.next_event()
    assert isinstance(event, WebSocketRequest), event
    server.accept_websocket("diaproto.v1", now=0.0)
    server.data_to_send(0.0)
    assert server.state is State.WEBSOCKET
    return server


@target("ws_server_frames", seeds=_SERVER_SEEDS)
def ws_server_frames(data: bytes) -> None:
    """Arbitrary bytes as client frames, in two pieces (our close between them when the
    first byte's top bit is set), then timers and EOF."""
    server = _open_server()
    cut = data[0] % (len(data) + 1) if data else 0
    for now, piece in ((0.0, data[:cut]), (1.0, data[cut:])):
        server.receive_data(piece, now)
        _drive_server(server, now)
        if data and data[0] & 0x80:  # our close goes out between the two pieces
            server.close(now)
    deadline = server.next_deadline()
    assert deadline is None or deadline >= 1.0 or server.state is not State.WEBSOCKET
    server.handle_timer(1e6)
    _drive_server(server, 1e6)
    server.receive_eof(1e6)
    events = _drive_server(server, 1e6)
    assert server.finished, (server.state, events)
    server.close(1e6)
    server.data_to_send(1e6)


_CLIENT_SEEDS = [
    _unmasked(0x1, encode_message(StreamOpened(1, "tok")).encode()),
    _unmasked(0x2, encode_records([(1, 1, b"abc"), (2, 1, b""), (1, 2, b"de")])),
    _unmasked(0x1, encode_message(StreamEnd(1, 2)).encode())
    + _unmasked(0x1, encode_message(StreamError(None, "internal", "x")).encode()),
    _unmasked(0x2, b"\x00\x00\x00\x01", fin=False) + _unmasked(0x9, b"p") + _unmasked(0x0, b"x"),
    _unmasked(0x8, struct.pack("!H", 1001) + b"going"),
    _unmasked(0x2, b"\x00\x00"),
    _masked(0x1, b"masked from a server"),
]


def _open_client() -> WebSocketClientConnection:
    client = WebSocketClientConnection(0.0, "fuzz", subprotocols=("diaproto.v1",), config=_CONFIG)
    server = ServerConnection(0.0)
    server.receive_data(client.data_to_send(0.0), 0.0)
    event = server.next_event()
    assert isinstance(event, WebSocketRequest), event
    server.accept_websocket("diaproto.v1", now=0.0)
    client.receive_data(server.data_to_send(0.0), 0.0)
    while client.next_event() is not None:
        pass
    assert client.state is ClientState.OPEN
    return client


def _drain_client(client: WebSocketClientConnection, now: float) -> None:
    while client.next_event() is not None:
        pass
    client.data_to_send(now)


@target("ws_client_frames", seeds=_CLIENT_SEEDS)
def ws_client_frames(data: bytes) -> None:
    """Arbitrary bytes as server frames, in two pieces (our close between them when the
    first byte's top bit is set), then timers and EOF."""
    client = _open_client()
    cut = data[0] % (len(data) + 1) if data else 0
    for now, piece in ((0.0, data[:cut]), (1.0, data[cut:])):
        client.receive_data(piece, now)
        _drain_client(client, now)
        if data and data[0] & 0x80:  # our close goes out between the two pieces
            client.close(now)
    client.handle_timer(1e6)
    _drain_client(client, 1e6)
    client.receive_eof(1e6)
    _drain_client(client, 1e6)
    assert client.finished, client.state
    client.close(1e6)
    client.data_to_send(1e6)
