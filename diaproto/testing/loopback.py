"""Server and client connections joined in memory, driven by a fake clock.

``Loopback.pump()`` moves bytes both ways until neither side has anything to say, and
collects each side's events; ``Loopback.advance(seconds)`` moves the clock and fires every
timer that falls due on the way, in order, as a real adapter's timer would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from diaproto.client import SseClientConnection, WebSocketClientConnection
from diaproto.config import ConnectionConfig
from diaproto.events import Event, SseRequest, WebSocketRequest
from diaproto.runtime import Connection
from diaproto.server import ServerConnection
from diaproto.sse import SseEvent
from diaproto.testing.clock import FakeClock


@dataclass
class Loopback:
    server: ServerConnection
    client: Connection
    clock: FakeClock
    server_events: list[Event] = field(default_factory=list)
    client_events: list[Event] = field(default_factory=list)
    #: When False, bytes from the server are held back (a client that stopped reading).
    client_reading: bool = True
    held: bytearray = field(default_factory=bytearray)

    def pump(self, max_rounds: int = 1000) -> None:
        """Exchange bytes and drain events until both sides are quiet."""
        for _ in range(max_rounds):
            moved = False
            now = self.clock.now
            to_server = self.client.data_to_send(now)
            if to_server:
                self.server.receive_data(to_server, now)
                moved = True
            moved |= _drain(self.server, self.server_events)
            to_client = self.server.data_to_send(now)
            if to_client:
                self.held += to_client
                moved = True
            if self.client_reading and self.held:
                self.client.receive_data(bytes(self.held), now)
                self.held.clear()
            moved |= _drain(self.client, self.client_events)
            if not moved:
                return
        msg = "loopback did not settle; a side keeps producing output"
        raise RuntimeError(msg)

    def advance(self, seconds: float) -> None:
        """Move the clock, firing each side's timers at their deadlines on the way."""
        target = self.clock.now + seconds
        while True:
            deadlines = [
                d
                for d in (self.server.next_deadline(), self.client.next_deadline())
                if d is not None and d <= target
            ]
            if not deadlines:
                break
            self.clock.now = max(self.clock.now, min(deadlines))
            self.server.handle_timer(self.clock.now)
            self.client.handle_timer(self.clock.now)
            self.pump()
        self.clock.now = target
        self.pump()

    def take_server_events(self) -> list[Event]:
        events, self.server_events = self.server_events, []
        return events

    def take_client_events(self) -> list[Event]:
        events, self.client_events = self.client_events, []
        return events


def _drain(endpoint: Connection, sink: list[Event]) -> bool:
    got = False
    while (event := endpoint.next_event()) is not None:
        sink.append(event)
        got = True
    return got


def websocket_pair(
    clock: FakeClock | None = None,
    *,
    target: str = "/ws",
    offer: tuple[str, ...] = ("diaproto.v1",),
    accept: str | None = "diaproto.v1",
    server_config: ConnectionConfig | None = None,
    client_config: ConnectionConfig | None = None,
) -> Loopback:
    """A server and a WebSocket client, handshake done (the server accepts ``accept``)."""
    clock = clock or FakeClock()
    server = ServerConnection(clock.now, server_config)
    client = WebSocketClientConnection(
        clock.now, "localhost", target, subprotocols=offer, config=client_config
    )
    loop = Loopback(server, client, clock)
    loop.pump()
    request = loop.take_server_events()
    if len(request) != 1 or not isinstance(request[0], WebSocketRequest):
        msg = f"expected one WebSocketRequest, got {request}"
        raise AssertionError(msg)
    server.accept_websocket(accept, now=clock.now)
    loop.pump()
    return loop


def sse_pair(
    clock: FakeClock | None = None,
    *,
    target: str = "/events",
    last_event_id: str | None = None,
    server_config: ConnectionConfig | None = None,
    client_config: ConnectionConfig | None = None,
    stamp: Callable[[SseEvent], SseEvent] | None = None,
    id_prefix: str = "",
) -> Loopback:
    """A server and an SSE client, the response started (``stamp`` and ``id_prefix``: see
    ``accept_sse``)."""
    clock = clock or FakeClock()
    server = ServerConnection(clock.now, server_config)
    client = SseClientConnection(
        clock.now, "localhost", target, last_event_id=last_event_id, config=client_config
    )
    loop = Loopback(server, client, clock)
    loop.pump()
    request = loop.take_server_events()
    if len(request) != 1 or not isinstance(request[0], SseRequest):
        msg = f"expected one SseRequest, got {request}"
        raise AssertionError(msg)
    server.accept_sse(now=clock.now, stamp=stamp, id_prefix=id_prefix)
    loop.pump()
    return loop
