"""The tools diaproto.testing gives users behave as documented."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto import SseMessage, SseParser, WebSocketMessage
from diaproto.sse import SseEvent
from diaproto.testing import FakeClock, sse_pair, websocket_pair
from diaproto.testing.strategies import client_messages, splits, sse_events
from diaproto.wire import decode_client_message, encode_message


def test_fake_clock_moves_only_forward_and_when_told() -> None:
    clock = FakeClock(5.0)
    assert clock() == 5.0
    assert clock.advance(1.5) == 6.5
    assert clock.now == 6.5
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)


@given(st.data(), st.binary(max_size=300))
def test_splits_cover_the_data_exactly(data: st.DataObject, blob: bytes) -> None:
    pieces = data.draw(splits(blob))
    assert b"".join(pieces) == blob
    assert all(pieces)  # no empty piece: an empty read means EOF to many adapters


@given(client_messages)
def test_client_message_strategy_yields_encodable_messages(message: object) -> None:
    assert decode_client_message(encode_message(message)) == message  # type: ignore[arg-type]


@given(st.lists(sse_events, max_size=5))
def test_sse_event_strategy_round_trips(events: list[SseEvent]) -> None:
    parser = SseParser()
    parser.feed(b"".join(e.encode() for e in events))
    got: list[SseMessage] = []
    while (message := parser.next_event()) is not None:
        got.append(message)
    # Events without data lines still carry one (possibly empty) data line, so all arrive.
    assert [m.data for m in got] == [
        e.data.replace("\r\n", "\n").replace("\r", "\n") for e in events
    ]


def test_websocket_pair_raw_echo_and_advance_fires_heartbeat() -> None:
    loop = websocket_pair(offer=("chat",), accept="chat")
    assert loop.server.subprotocol == "chat"
    loop.client.send_message("hello", loop.clock.now)  # type: ignore[attr-defined]
    loop.pump()
    assert loop.take_server_events() == [WebSocketMessage("hello")]
    ping_at = loop.server.next_deadline()
    assert ping_at is not None
    loop.advance(ping_at - loop.clock.now)  # the server pings; the client answers
    assert loop.server.state.value == "websocket"
    assert loop.clock.now == ping_at


def test_loopback_holds_bytes_while_the_client_does_not_read() -> None:
    loop = sse_pair()
    loop.take_client_events()
    loop.server.open_stream(1, loop.clock.now)
    loop.client_reading = False
    loop.server.send(1, "tick", loop.clock.now)
    loop.pump()
    assert loop.take_client_events() == []
    assert b"data: tick" in loop.held
    loop.client_reading = True
    loop.pump()
    assert [e.data for e in loop.take_client_events() if isinstance(e, SseMessage)] == ["tick"]
