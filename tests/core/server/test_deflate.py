"""permessage-deflate (RFC 7692): negotiation, compressed framing both ways, bounded inflation."""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Request as WsRequest

from diaproto.client import WebSocketClientConnection
from diaproto.config import ConnectionConfig, Limits
from diaproto.events import (
    ConnectionClosed,
    Event,
    RemoteError,
    WebSocketAccepted,
    WebSocketMessage,
    WebSocketRequest,
)
from diaproto.scheduler import Priority
from diaproto.server import ServerConnection, State
from diaproto.testing.clock import FakeClock
from diaproto.testing.loopback import Loopback
from diaproto.wire import SUBPROTOCOL, DataChunk, StreamOpened
from diaproto.wsframes import BoundedPerMessageDeflate, negotiate_deflate

MIB = 1024 * 1024
OP_CONT, OP_TEXT, OP_BINARY, OP_PING = 0x0, 0x1, 0x2, 0x9
RSV1 = 0x40


def pair(
    *,
    offer: bool = True,
    compress: bool = True,
    subprotocols: tuple[str, ...] = (),
    accept: str | None = None,
    limit: int = MIB,
) -> Loopback:
    """A server and a client, handshake done; deflate offered and allowed as asked."""
    clock = FakeClock()
    config = ConnectionConfig(limits=Limits(max_message_bytes=limit))
    server = ServerConnection(clock.now, config)
    client = WebSocketClientConnection(
        clock.now,
        "localhost",
        "/ws",
        subprotocols=subprotocols,
        compress=offer,
        config=config,
    )
    loop = Loopback(server, client, clock)
    loop.pump()
    [request] = loop.take_server_events()
    assert isinstance(request, WebSocketRequest)
    server.accept_websocket(accept, now=clock.now, compress=compress)
    loop.pump()
    [accepted] = loop.take_client_events()
    assert isinstance(accepted, WebSocketAccepted)
    return loop


def echo_round_trip(loop: Loopback, messages: list[bytes | str]) -> list[Event]:
    """Client sends each message; the server sends back what it got, on stream 0."""
    now = loop.clock.now
    if 0 not in loop.server.scheduler.stream_ids:
        loop.server.open_stream(0, now, priority=Priority.INTERACTIVE)
    for message in messages:
        loop.client.send_message(message, now)  # type: ignore[attr-defined]
    loop.pump()
    received = loop.take_server_events()
    for event in received:
        assert isinstance(event, WebSocketMessage)
        loop.server.send(0, event.data, now)
    loop.pump()
    return loop.take_client_events()


def masked(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """One client frame, masked as a client must."""
    first = (0x80 if fin else 0) | (RSV1 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def deflate(data: bytes) -> bytes:
    """One RFC 7692 message payload: raw deflate, sync-flushed, tail stripped."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def feed_server(loop: Loopback, data: bytes) -> list[Event]:
    loop.server.receive_data(data, loop.clock.now)
    events: list[Event] = []
    while (event := loop.server.next_event()) is not None:
        events.append(event)
    return events


def fatal_code(events: list[Event]) -> int | None:
    errors = [e for e in events if isinstance(e, RemoteError) and e.fatal]
    assert len(errors) == 1, events
    assert isinstance(events[-1], ConnectionClosed)
    return errors[0].error.close_code


# --- negotiation ---------------------------------------------------------------------------


def test_deflate_is_negotiated_and_both_directions_are_compressed() -> None:
    loop = pair()
    assert loop.server.extensions is not None
    assert loop.server.extensions.startswith("permessage-deflate")
    loop.server.open_stream(0, loop.clock.now, priority=Priority.INTERACTIVE)
    text = "hello, compressed world " * 50
    loop.server.send(0, text, loop.clock.now)
    loop.server.send(0, bytes(2000), loop.clock.now)
    wire = loop.server.data_to_send(loop.clock.now)
    assert wire[0] & RSV1 and wire[0] & 0x0F == OP_TEXT  # compressed, as RFC 7692 marks it
    assert len(wire) < len(text)  # and smaller than the text alone
    loop.client.receive_data(wire, loop.clock.now)
    loop.pump()
    assert loop.take_client_events() == [WebSocketMessage(text), WebSocketMessage(bytes(2000))]
    events = echo_round_trip(loop, ["ü" * 300, b"\x00\x01" * 700, ""])
    assert events == [
        WebSocketMessage("ü" * 300),
        WebSocketMessage(b"\x00\x01" * 700),
        WebSocketMessage(""),
    ]


def test_no_deflate_unless_the_application_allows_it() -> None:
    loop = pair(compress=False)
    assert loop.server.extensions is None
    loop.server.open_stream(0, loop.clock.now)
    loop.server.send(0, "plain", loop.clock.now)
    wire = loop.server.data_to_send(loop.clock.now)
    assert wire == b"\x81\x05plain"  # the fast encoder's unmasked frame, no RSV1


def test_no_deflate_unless_the_client_offers_it() -> None:
    loop = pair(offer=False)
    assert loop.server.extensions is None
    assert echo_round_trip(loop, ["a", b"b"]) == [WebSocketMessage("a"), WebSocketMessage(b"b")]


def upgraded_server(offer: str, *, limit: int = MIB) -> ServerConnection:
    """A server that accepted an upgrade whose request offered ``offer`` (raw, as sent)."""
    server = ServerConnection(0.0, ConnectionConfig(limits=Limits(max_message_bytes=limit)))
    request = (
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Extensions: {offer}\r\n\r\n"
    )
    server.receive_data(request.encode(), 0.0)
    assert isinstance(server.next_event(), WebSocketRequest)
    server.accept_websocket(now=0.0, compress=True)
    server.open_stream(0, 0.0, priority=Priority.INTERACTIVE)
    return server


def test_client_no_context_takeover() -> None:
    server = upgraded_server("permessage-deflate; client_no_context_takeover")
    response = server.data_to_send(0.0)
    assert b"sec-websocket-extensions: permessage-deflate; client_no_context_takeover" in response
    # Each message inflates on a fresh inflater: the same compressed bytes work twice.
    frame = masked(OP_TEXT, deflate(b"again and again"), rsv1=True)
    server.receive_data(frame + frame, 0.0)
    assert [server.next_event(), server.next_event()] == [WebSocketMessage("again and again")] * 2


def test_server_no_context_takeover_with_a_wsproto_client() -> None:
    # The client asks the server to reset its compressor per message: the server does, and the
    # client (our bounded extension) inflates each message afresh.
    extension = BoundedPerMessageDeflate(MIB)
    extension.server_no_context_takeover = True
    client = WSConnection(ConnectionType.CLIENT)
    server = ServerConnection(0.0)
    server.receive_data(
        client.send(WsRequest(host="localhost", target="/", extensions=[extension])), 0.0
    )
    assert isinstance(server.next_event(), WebSocketRequest)
    server.accept_websocket(now=0.0, compress=True)
    assert server.extensions is not None
    assert "; server_no_context_takeover" in server.extensions
    server.open_stream(0, 0.0, priority=Priority.INTERACTIVE)
    client.receive_data(server.data_to_send(0.0))
    assert isinstance(next(client.events()), AcceptConnection)
    for text in ("one", "one", "two"):
        server.send(0, text, 0.0)
    wire = server.data_to_send(0.0)
    assert wire.count(deflate(b"one")) == 2  # no context: the same message, the same bytes
    client.receive_data(wire)
    assert [getattr(e, "data", e) for e in client.events()] == ["one", "one", "two"]


def test_wire_protocol_over_deflate() -> None:
    loop = pair(subprotocols=(SUBPROTOCOL,), accept=SUBPROTOCOL)
    now = loop.clock.now
    loop.server.open_stream(7, now)
    loop.server.send(7, b"chunk-1", now)
    loop.server.send(7, b"chunk-2", now)
    loop.pump()
    events = loop.take_client_events()
    assert isinstance(events[0], StreamOpened)
    assert [e.data for e in events if isinstance(e, DataChunk)] == [b"chunk-1", b"chunk-2"]


@pytest.mark.parametrize(
    ("offers", "expected"),
    [
        ([], None),
        (["x-webkit-deflate-frame"], None),
        (["permessage-deflate"], "permessage-deflate"),
        (["Permessage-Deflate"], "permessage-deflate"),
        (
            ["permessage-deflate; client_max_window_bits"],
            "permessage-deflate; client_max_window_bits=15",
        ),
        (
            ['permessage-deflate; server_max_window_bits="10"'],
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            ["permessage-deflate; client_no_context_takeover"],
            "permessage-deflate; client_no_context_takeover",
        ),
        # An unacceptable offer is declined and the next one taken (RFC 7692 5.1).
        (["permessage-deflate; foo=1, permessage-deflate"], "permessage-deflate"),
        (["permessage-deflate; client_no_context_takeover; client_no_context_takeover"], None),
        (["permessage-deflate; client_no_context_takeover=1"], None),
        (["permessage-deflate; server_max_window_bits"], None),
        (["permessage-deflate; server_max_window_bits=abc"], None),
        (["permessage-deflate; server_max_window_bits=\u0661\u0665"], None),  # digits, not ASCII
        (["permessage-deflate; client_max_window_bits=16"], None),
        (["permessage-deflate; client_max_window_bits=7"], None),
        (["permessage-deflate;"], None),
        # 8 is valid in RFC 7692 but zlib cannot honour it: declined, the next offer taken.
        (
            ["permessage-deflate; server_max_window_bits=8", "permessage-deflate"],
            "permessage-deflate",
        ),
    ],
)
def test_negotiation(offers: list[str], expected: str | None) -> None:
    result = negotiate_deflate(offers, MIB)
    if expected is None:
        assert result is None
    else:
        assert result is not None
        extension, header = result
        assert header == expected
        assert extension.enabled()


def test_a_declined_offer_answers_without_the_extension() -> None:
    server = upgraded_server("permessage-deflate; server_max_window_bits=8")
    assert server.extensions is None
    assert b"sec-websocket-extensions" not in server.data_to_send(0.0)


# --- inbound: bounded inflation ------------------------------------------------------------


def test_a_compression_bomb_is_refused_with_1009_without_inflating_it() -> None:
    limit = 64 * 1024
    loop = pair(limit=limit)
    bomb = masked(OP_BINARY, deflate(bytes(64 * MIB)), rsv1=True)  # ~64 KiB -> 64 MiB
    assert len(bomb) < limit
    tracemalloc.start()
    try:
        events = feed_server(loop, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fatal_code(events) == 1009
    assert loop.server.state is State.CLOSED
    assert peak < 4 * MIB, f"inflating the bomb held {peak} bytes"
    close = loop.server.data_to_send(loop.clock.now)
    assert close[:1] == b"\x88" and struct.unpack("!H", close[2:4]) == (1009,)


def test_a_bomb_spread_over_fragments_counts_the_whole_message() -> None:
    loop = pair(limit=10_000)
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    first = compressor.compress(bytes(6000)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(bytes(6000)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = masked(OP_BINARY, first, fin=False, rsv1=True) + masked(OP_CONT, second[:-4])
    assert fatal_code(feed_server(loop, data)) == 1009


def test_text_is_bounded_in_code_points_as_without_compression() -> None:
    # 3000 code points of 3 bytes each: within a 4000 limit, though 9000 bytes inflated.
    loop = pair(limit=4000)
    text = "€" * 3000
    events = feed_server(loop, masked(OP_TEXT, deflate(text.encode()), rsv1=True))
    assert events == [WebSocketMessage(text)]
    too_long = "€" * 4001
    events = feed_server(loop, masked(OP_TEXT, deflate(too_long.encode()), rsv1=True))
    assert fatal_code(events) == 1009


def test_fragmented_compressed_message_with_a_ping_between() -> None:
    loop = pair()
    payload = deflate(b"fragmented and compressed " * 20)
    half = len(payload) // 2
    data = (
        masked(OP_TEXT, payload[:half], fin=False, rsv1=True)
        + masked(OP_PING, b"still there?")
        + masked(OP_CONT, payload[half:])
    )
    events = feed_server(loop, data)
    assert events == [WebSocketMessage("fragmented and compressed " * 20)]
    assert b"still there?" in loop.server.data_to_send(loop.clock.now)  # the pong


def test_uncompressed_messages_pass_on_a_deflate_connection() -> None:
    loop = pair()
    data = (
        masked(OP_BINARY, b"raw")
        + masked(OP_TEXT, b"part ", fin=False)
        + masked(OP_CONT, b"two")
        + masked(OP_TEXT, deflate(b"then compressed"), rsv1=True)
    )
    events = feed_server(loop, data)
    assert events == [
        WebSocketMessage(b"raw"),
        WebSocketMessage("part two"),
        WebSocketMessage("then compressed"),
    ]


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([masked(OP_BINARY, b"\xff\xff\xff", rsv1=True)], 1007),  # not deflate data
        ([masked(OP_BINARY, b"\x04", rsv1=True)], 1007),  # broken only by the stripped tail
        ([masked(OP_PING, b"", rsv1=True)], 1002),  # RSV1 on a control frame
        (
            [masked(OP_TEXT, deflate(b"a"), fin=False, rsv1=True), masked(OP_CONT, b"", rsv1=True)],
            1002,  # RSV1 on a continuation
        ),
        ([masked(OP_CONT, b"stray")], 1002),  # a continuation with no message begun
    ],
)
def test_bad_compressed_input_fails_the_connection(frames: list[bytes], code: int) -> None:
    loop = pair()
    assert fatal_code(feed_server(loop, b"".join(frames))) == code


def test_the_frame_header_may_arrive_in_pieces() -> None:
    loop = pair()
    frame = masked(OP_TEXT, deflate(b"byte by byte"), rsv1=True)
    events: list[Event] = []
    for i in range(len(frame)):
        events += feed_server(loop, frame[i : i + 1])
    assert events == [WebSocketMessage("byte by byte")]


# --- outbound after the peer vanished ------------------------------------------------------


def test_queued_messages_are_dropped_after_eof() -> None:
    loop = pair()
    now = loop.clock.now
    loop.server.open_stream(0, now)
    loop.server.send(0, "never sent", now)
    loop.server.receive_eof(now)
    assert loop.server.data_to_send(now) == b""  # wsproto is closed: nothing to frame
    events = feed_server(loop, b"")
    assert isinstance(events[-1], ConnectionClosed)
