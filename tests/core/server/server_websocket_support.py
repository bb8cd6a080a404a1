"""Helpers of the WebSocket tests: client frames built by hand, wsproto's own client
against a server connection, and what a connection hands out, read back."""

from __future__ import annotations

from core_support import drain
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Event as WsEvent
from wsproto.events import Request as WsRequest

from diaproto.config import ConnectionConfig
from diaproto.events import Event, WebSocketRequest
from diaproto.server import ServerConnection, State
from diaproto.testing import FakeClock


class RawClient:
    """wsproto's own client, by hand, against a ServerConnection past the handshake."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        offer: tuple[str, ...] = ("diaproto.v1",),
        accept: str | None = "diaproto.v1",
        config: ConnectionConfig | None = None,
    ) -> None:
        self.clock = clock
        self.server = ServerConnection(clock.now, config)
        self.ws = WSConnection(ConnectionType.CLIENT)
        request = WsRequest(host="localhost", target="/ws", subprotocols=list(offer))
        self.server.receive_data(self.ws.send(request), clock.now)
        events = drain(self.server)
        assert len(events) == 1
        assert isinstance(events[0], WebSocketRequest)
        self.server.accept_websocket(accept, now=clock.now)
        self.ws.receive_data(self.server.data_to_send(clock.now))
        accepted = list(self.ws.events())
        assert len(accepted) == 1
        assert isinstance(accepted[0], AcceptConnection)
        assert accepted[0].subprotocol == accept

    def send(self, event: WsEvent) -> None:
        self.server.receive_data(self.ws.send(event), self.clock.now)

    def send_raw(self, data: bytes) -> None:
        self.server.receive_data(data, self.clock.now)

    def events(self) -> list[Event]:
        return drain(self.server)

    def read(self) -> list[WsEvent]:
        """Whatever the server has to send now, parsed by wsproto."""
        self.ws.receive_data(self.server.data_to_send(self.clock.now))
        return list(self.ws.events())


def state_of(server: ServerConnection) -> State:
    """The state, read through a call so that mypy does not narrow it between steps."""
    return server.state
