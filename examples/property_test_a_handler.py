"""Property-test your own handler with diaproto.testing, no sockets needed.

The handler below answers each WebSocket text message with its upper-case form, on a
stream of its own. The property: whatever the messages, and however the client's bytes
are split on their way in, every answer arrives, in order. Run it:

    .venv/bin/python examples/property_test_a_handler.py
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from diaproto import Event, ServerConnection, WebSocketMessage
from diaproto.testing import websocket_pair
from diaproto.testing.strategies import splits


def handle(conn: ServerConnection, event: Event, now: float) -> None:
    """The application under test: upper-case echo."""
    if isinstance(event, WebSocketMessage) and isinstance(event.data, str):
        conn.send(0, event.data.upper(), now)


@settings(max_examples=50, deadline=None)
@given(st.data(), st.lists(st.text(max_size=40), max_size=8))
def test_every_message_is_answered_in_order(data: st.DataObject, texts: list[str]) -> None:
    loop = websocket_pair(offer=("upper",), accept="upper")
    server, client, clock = loop.server, loop.client, loop.clock
    server.open_stream(0, clock.now)
    wire = b""
    for text in texts:
        client.send_message(text, clock.now)  # type: ignore[attr-defined]
        wire += client.data_to_send(clock.now)
    for piece in data.draw(splits(wire)):  # the network may cut anywhere
        server.receive_data(piece, clock.now)
        while (event := server.next_event()) is not None:
            handle(server, event, clock.now)
    loop.advance(0.01)
    answers = [e.data for e in loop.take_client_events() if isinstance(e, WebSocketMessage)]
    assert answers == [t.upper() for t in texts]


if __name__ == "__main__":
    test_every_message_is_answered_in_order()
    print("property held")
