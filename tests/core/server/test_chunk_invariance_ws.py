"""The same WebSocket bytes, split anywhere, give the same events (and the same answers).

Server side: a client's handshake and frames (fragmented messages, pings, pongs, close) fed
to a ServerConnection whole and in arbitrary pieces. Client side: a server's handshake
answer and frames fed to a WebSocketClientConnection whole and in pieces."""

from __future__ import annotations

import copy
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.events import Event as WsEvent
from wsproto.events import Request as WsRequest

from diaproto.client import WebSocketClientConnection
from diaproto.events import Event, RemoteError, StreamFinished, WebSocketRequest
from diaproto.server import ServerConnection
from diaproto.testing.strategies import client_messages, splits
from diaproto.wire import encode_message, encode_records
from diaproto.wsframes import encode_frame

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Comparable = tuple[object, ...]


def normal(event: Event) -> Comparable:
    """An event as a comparable value (exceptions compare by identity, so describe them)."""
    if isinstance(event, RemoteError):
        error = event.error
        return ("RemoteError", type(error).__name__, error.message, error.close_code, event.fatal)
    if isinstance(event, StreamFinished):
        return ("StreamFinished", event.stream_id)
    return ("event", event)


# --- client -> server ----------------------------------------------------------------------

text_parts = st.lists(st.text(max_size=40), min_size=1, max_size=4)
binary_parts = st.lists(st.binary(max_size=300), min_size=1, max_size=4)
client_items = st.one_of(
    st.tuples(st.just("text"), text_parts),
    st.tuples(st.just("binary"), binary_parts),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
    st.tuples(st.just("pong"), st.binary(max_size=20)),
    st.tuples(st.just("wire"), client_messages),
)


def client_stream(items: list[tuple[str, object]], close: bool) -> bytes:
    """A real client's bytes: the upgrade, then frames; a ping inside every fragmented one."""
    ws = WSConnection(ConnectionType.CLIENT)
    out = ws.send(WsRequest(host="h", target="/ws", subprotocols=["diaproto.v1"]))
    peer = WSConnection(ConnectionType.SERVER)  # only to get wsproto's client past its handshake
    peer.receive_data(out)
    list(peer.events())
    ws.receive_data(peer.send(AcceptConnection()))
    assert isinstance(next(ws.events()), AcceptConnection)
    for kind, value in items:
        if kind in {"text", "binary"}:
            assert isinstance(value, list)
            for n, part in enumerate(value):
                last = n == len(value) - 1
                message: WsEvent = (
                    TextMessage(data=part, message_finished=last)
                    if kind == "text"
                    else BytesMessage(data=part, message_finished=last)
                )
                out += ws.send(message)
                if not last:
                    out += ws.send(Ping(payload=b"mid"))
        elif kind == "ping":
            assert isinstance(value, bytes)
            out += ws.send(Ping(payload=value))
        elif kind == "pong":
            assert isinstance(value, bytes)
            out += ws.send(Pong(payload=value))
        else:
            out += ws.send(TextMessage(data=encode_message(value)))  # type: ignore[arg-type]
    if close:
        out += ws.send(CloseConnection(code=1000, reason="done"))
    return out


def direct_answers(output: bytes) -> list[tuple[int, bytes]]:
    """The pong and close frames in a server's output (after its 101 answer)."""
    data = output[output.index(b"\r\n\r\n") + 4 :]
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        first, length, offset = data[offset], data[offset + 1], offset + 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, offset)
            offset += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, offset)
            offset += 8
        if first & 0x0F in (0x8, 0xA):
            frames.append((first, data[offset : offset + length]))
        offset += length
    return frames


def run_server(pieces: list[bytes], subprotocol: str | None) -> tuple[list[Comparable], bytes]:
    server = ServerConnection(0.0)
    events: list[Comparable] = []
    output = bytearray()
    for piece in pieces:
        server.receive_data(piece, 0.0)
        while (event := server.next_event()) is not None:
            events.append(normal(event))
            if isinstance(event, WebSocketRequest):
                server.accept_websocket(subprotocol, now=0.0)
        output += server.data_to_send(0.0)
    return events, bytes(output)


@FAST
@given(
    data=st.data(),
    items=st.lists(client_items, max_size=8),
    close=st.booleans(),
    subprotocol=st.sampled_from([None, "diaproto.v1"]),
)
def test_server_events_do_not_depend_on_splits(
    data: st.DataObject,
    items: list[tuple[str, object]],
    close: bool,
    subprotocol: str | None,
) -> None:
    stream = client_stream(items, close)
    whole = run_server([stream], subprotocol)
    pieces = data.draw(splits(stream, max_pieces=24))
    assert b"".join(pieces) == stream
    split = run_server(pieces, subprotocol)
    assert split[0] == whole[0]
    if subprotocol is None:
        assert split[1] == whole[1]  # every answer is direct: the very same bytes
    else:
        # Wire-protocol error answers leave through the scheduler, at data_to_send, so where
        # they fall among the direct answers (pongs, the close echo) depends on the pieces;
        # the direct answers themselves may not.
        assert direct_answers(split[1]) == direct_answers(whole[1])
    assert whole[0][0][0] == "event"  # the upgrade request came first
    if close:
        assert whole[0][-1][0] == "event"
        assert "ConnectionClosed" in repr(whole[0][-1])


def test_server_byte_by_byte_with_everything() -> None:
    """One fixed stream with every kind of frame, fed a byte at a time."""
    items: list[tuple[str, object]] = [
        ("text", ["he", "llo"]),
        ("binary", [b"\x00" * 130, b"\x01"]),
        ("ping", b"x"),
        ("pong", b"y"),
    ]
    stream = client_stream(items, close=True)
    whole_events, whole_out = run_server([stream], None)
    assert run_server([bytes([b]) for b in stream], None) == (whole_events, whole_out)
    kinds = [e[1] for e in whole_events]
    assert [type(k).__name__ for k in kinds] == [
        "WebSocketRequest",
        "WebSocketMessage",
        "WebSocketMessage",
        "ConnectionClosed",
    ]


# --- server -> client ----------------------------------------------------------------------


server_items = st.one_of(
    st.tuples(st.just("text"), text_parts),
    st.tuples(st.just("binary"), binary_parts),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
    st.tuples(st.just("records"), st.lists(st.binary(max_size=50), min_size=1, max_size=4)),
    st.tuples(st.just("garbage-json"), st.text(max_size=10)),
)


def server_frames(items: list[tuple[str, object]]) -> bytes:
    """Server frames by hand: fragments (a ping inside), pings, records, text."""
    out = bytearray()
    for kind, value in items:
        if kind in ("text", "binary"):
            assert isinstance(value, list)
            opcode = 0x1 if kind == "text" else 0x2
            for n, part in enumerate(value):
                payload = part.encode() if isinstance(part, str) else part
                first = opcode if n == 0 else 0x0
                fin = n == len(value) - 1
                out += bytes((first | (0x80 if fin else 0),)) + encode_frame(0, payload)[1:]
                if not fin:
                    out += encode_frame(0x9, b"mid")
        elif kind == "ping":
            assert isinstance(value, bytes)
            out += encode_frame(0x9, value)
        elif kind == "records":
            assert isinstance(value, list)
            out += encode_frame(0x2, encode_records((1, n + 1, p) for n, p in enumerate(value)))
        else:
            assert isinstance(value, str)
            out += encode_frame(0x1, value.encode())
    return bytes(out)


def connecting_client(subprotocol: str | None) -> tuple[WebSocketClientConnection, bytes]:
    """A client that has sent its upgrade, and the server's answer to it."""
    client = WebSocketClientConnection(0.0, "h", subprotocols=("diaproto.v1",))
    server = ServerConnection(0.0)
    server.receive_data(client.data_to_send(0.0), 0.0)
    request = server.next_event()
    assert isinstance(request, WebSocketRequest)
    server.accept_websocket(subprotocol, now=0.0)
    return client, server.data_to_send(0.0)


def unmask(data: bytes) -> list[tuple[int, bytes]]:
    """A client's frames as (first byte, payload): the mask keys are random, the rest is not."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        first, second = data[offset], data[offset + 1]
        assert second & 0x80, "a client frame is masked"
        length, offset = second & 0x7F, offset + 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, offset)
            offset += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, offset)
            offset += 8
        key, offset = data[offset : offset + 4], offset + 4
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[offset : offset + length]))
        frames.append((first, payload))
        offset += length
    return frames


def run_client(
    client: WebSocketClientConnection, pieces: list[bytes]
) -> tuple[list[Comparable], list[tuple[int, bytes]]]:
    events: list[Comparable] = []
    output = bytearray()
    for piece in pieces:
        client.receive_data(piece, 0.0)
        while (event := client.next_event()) is not None:
            events.append(normal(event))
        output += client.data_to_send(0.0)
    return events, unmask(bytes(output))


@FAST
@given(
    data=st.data(),
    items=st.lists(server_items, max_size=8),
    close=st.booleans(),
    subprotocol=st.sampled_from([None, "diaproto.v1"]),
)
def test_client_events_do_not_depend_on_splits(
    data: st.DataObject,
    items: list[tuple[str, object]],
    close: bool,
    subprotocol: str | None,
) -> None:
    client, answer = connecting_client(subprotocol)
    twin = copy.deepcopy(client)  # the same handshake key, fed differently
    stream = answer + server_frames(items)
    if close:
        stream += encode_frame(0x8, struct.pack("!H", 1001) + b"bye")
    whole = run_client(client, [stream])
    pieces = data.draw(splits(stream, max_pieces=24))
    assert run_client(twin, pieces) == whole
    assert whole[0][0] == ("event", whole[0][0][1])
    assert type(whole[0][0][1]).__name__ == "WebSocketAccepted"
    if close:
        assert "ConnectionClosed" in repr(whole[0][-1])


def test_client_byte_by_byte_with_everything() -> None:
    client, answer = connecting_client(None)
    twin = copy.deepcopy(client)
    items: list[tuple[str, object]] = [
        ("text", ["a", "b", "c"]),
        ("binary", [b"\x00" * 200]),
        ("ping", b"p"),
    ]
    stream = answer + server_frames(items) + encode_frame(0x8, struct.pack("!H", 1000))
    whole = run_client(client, [stream])
    assert run_client(twin, [bytes([b]) for b in stream]) == whole
    names = [type(e[1]).__name__ for e in whole[0]]
    assert names == [
        "WebSocketAccepted",
        "WebSocketMessage",
        "WebSocketMessage",
        "ConnectionClosed",
    ]
    mid, close = (0x8A, b"mid"), (0x88, struct.pack("!H", 1000))
    assert whole[1] == [mid, mid, (0x8A, b"p"), close]
