"""The WebSocket client: the handshake, keepalive, and the wire protocol's messages.

With ``diaproto.v1`` chosen by the server it hands out decoded wire messages (control
messages and binary records); otherwise each WebSocket message as it came.
"""

from __future__ import annotations

from collections import deque

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as WsRequest
from wsproto.extensions import Extension
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from diaproto.client.rejection import PendingRejection
from diaproto.client.state import ClientState, transition
from diaproto.config import ConnectionConfig
from diaproto.errors import CloseCode, LocalProtocolError, RemoteProtocolError
from diaproto.events import (
    ConnectionClosed,
    Event,
    Headers,
    RemoteError,
    WebSocketAccepted,
    WebSocketMessage,
)
from diaproto.headers import decode_headers, encode_headers
from diaproto.keepalive import Due, Keepalive
from diaproto.wire import (
    SUBPROTOCOL,
    ClientMessage,
    WireError,
    decode_records,
    decode_server_message,
    encode_message,
)
from diaproto.wsframes import BoundedPerMessageDeflate, MessageAssembler


class WebSocketClientConnection:
    """A WebSocket client; with ``diaproto.v1`` it hands out decoded wire messages."""

    def __init__(
        self,
        now: float,
        host: str,
        target: str = "/",
        *,
        subprotocols: tuple[str, ...] = (),
        headers: Headers = (),
        config: ConnectionConfig | None = None,
        compress: bool = False,
    ) -> None:
        """``compress``: offer permessage-deflate (used if the server accepts it)."""
        self.config = config or ConnectionConfig()
        self.state = ClientState.CONNECTING
        self.subprotocol: str | None = None
        self._ws = WSConnection(ConnectionType.CLIENT)
        limit = self.config.limits.max_message_bytes
        extensions: list[Extension] = [BoundedPerMessageDeflate(limit)] if compress else []
        self._out = bytearray(
            self._ws.send(
                WsRequest(
                    host=host,
                    target=target,
                    subprotocols=list(subprotocols),
                    extensions=extensions,
                    extra_headers=encode_headers(headers),
                )
            )
        )
        self._events: deque[Event] = deque()
        self._keepalive = Keepalive(self.config.timeouts, now)
        self._started = now
        self._assembler = MessageAssembler(self.config.limits.max_message_bytes)
        self._reject: PendingRejection | None = None
        self._wire = False

    def _enter(self, state: ClientState) -> None:
        self.state = transition(self.state, state)

    # --- the pump ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        if not data or self.state is ClientState.CLOSED:
            return
        self._keepalive.on_receive(now)
        self._feed(data)

    def receive_eof(self, now: float) -> None:
        if self.state is not ClientState.CLOSED and self._ws.state is not WsState.CLOSED:
            self._feed(None)

    def _feed(self, data: bytes | None) -> None:
        if self._ws.state is WsState.CLOSED:
            return  # wsproto refuses bytes after its end (EOF seen, event not yet pulled)
        try:
            self._ws.receive_data(data)
        except WsRemoteProtocolError as exc:  # wsproto checks the handshake answer eagerly
            self._fail(RemoteProtocolError(f"invalid handshake answer: {exc}"))

    def next_event(self) -> Event | None:
        while not self._events:
            if self.state is ClientState.CLOSED or not self._pull():
                break
        return self._events.popleft() if self._events else None

    def data_to_send(self, now: float) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_deadline(self) -> float | None:
        if self.state is ClientState.CONNECTING:
            handshake = self.config.timeouts.handshake
            return None if handshake is None else self._started + handshake
        if self.state is ClientState.CLOSED:
            return None
        return self._keepalive.deadline()

    def handle_timer(self, now: float) -> None:
        if self.state is ClientState.CONNECTING:
            handshake = self.config.timeouts.handshake
            if handshake is not None and now >= self._started + handshake:
                self._fail(RemoteProtocolError("no handshake answer in time"))
            return
        if self.state is ClientState.CLOSED:
            return
        due = self._keepalive.due(now)
        if due is Due.SEND_PING:
            self._out += self._ws.send(Ping(payload=b"diaproto"))
            self._keepalive.on_ping_sent(now)
        elif due is Due.PING_TIMEOUT:
            self.close(now, CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        elif due is Due.IDLE_TIMEOUT:
            self.close(now, CloseCode.NORMAL_CLOSURE, "idle timeout")
        elif due is Due.CLOSE_TIMEOUT:
            self._closed(CloseCode.ABNORMAL_CLOSURE, "close handshake timed out")

    @property
    def finished(self) -> bool:
        return self.state is ClientState.CLOSED

    # --- sending ---------------------------------------------------------------------------

    def send_message(self, data: bytes | str, now: float) -> None:
        if self.state is not ClientState.OPEN:
            raise LocalProtocolError(f"cannot send in state {self.state}")
        self._keepalive.on_activity(now)
        message = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        self._out += self._ws.send(message)

    def send_wire(self, message: ClientMessage, now: float) -> None:
        """Send a diaproto wire-protocol control message (open, cancel, credit, resume)."""
        self.send_message(encode_message(message), now)

    def close(self, now: float, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        if self.state is ClientState.OPEN and self._ws.state is WsState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=reason))
            self._enter(ClientState.CLOSING)
            self._keepalive.on_close_sent(now)
        elif self.state is ClientState.CONNECTING:
            self._closed(None, reason or "closed before the handshake completed")

    # --- inbound ---------------------------------------------------------------------------

    def _pull(self) -> bool:
        event = next(iter(self._ws.events()), None)
        if event is None:
            return False
        if isinstance(event, AcceptConnection):
            self._on_accept(event)
        elif isinstance(event, RejectConnection):
            self._reject = PendingRejection(event.status_code, decode_headers(event.headers))
            if not event.has_body:
                self._rejected()
        elif isinstance(event, RejectData):
            assert self._reject is not None
            self._reject.body.append(bytes(event.data))
            if event.body_finished:
                self._rejected()
        elif isinstance(event, (TextMessage, BytesMessage)):
            self._on_fragment(event)
        elif isinstance(event, Ping):
            if self._ws.state is WsState.OPEN:  # wsproto sends no pong after a close frame
                self._out += self._ws.send(Pong(payload=event.payload))
        elif isinstance(event, CloseConnection):
            self._on_close(event)
        return True

    def _on_accept(self, event: AcceptConnection) -> None:
        self._enter(ClientState.OPEN)
        self.subprotocol = event.subprotocol
        self._wire = event.subprotocol == SUBPROTOCOL
        self._keepalive.on_activity(self._keepalive.last_received)
        self._events.append(
            WebSocketAccepted(event.subprotocol, decode_headers(event.extra_headers))
        )

    def _on_fragment(self, event: TextMessage | BytesMessage) -> None:
        try:
            message = self._assembler.feed(event)
        except RemoteProtocolError as exc:
            self._protocol_failure(exc)
            return
        if message is None:
            return
        self._keepalive.on_activity(self._keepalive.last_received)
        if not self._wire:
            self._events.append(WebSocketMessage(message))
            return
        try:
            if isinstance(message, bytes):
                self._events.extend(decode_records(message))
            else:
                self._events.append(decode_server_message(message))
        except WireError as exc:
            self._events.append(RemoteError(exc, fatal=False))

    def _on_close(self, event: CloseConnection) -> None:
        if (
            self._ws.state in (WsState.OPEN, WsState.LOCAL_CLOSING)
            and event.code != CloseCode.ABNORMAL_CLOSURE
        ):
            # wsproto reports a frame it could not parse as a close; it is an error.
            self._protocol_failure(RemoteProtocolError(event.reason or "", close_code=event.code))
            return
        if self._ws.state is WsState.REMOTE_CLOSING:
            self._out += self._ws.send(event.response())
        self._closed(event.code, event.reason or "")

    def _protocol_failure(self, error: RemoteProtocolError) -> None:
        self._events.append(RemoteError(error, fatal=True))
        code = error.close_code or CloseCode.PROTOCOL_ERROR
        if self._ws.state is WsState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=error.message[:120]))
        self._closed(code, error.message)

    def _rejected(self) -> None:
        assert self._reject is not None
        self._events.append(self._reject.event())
        self._closed(None, f"rejected with {self._reject.status}")

    def _fail(self, error: RemoteProtocolError) -> None:
        self._events.append(RemoteError(error, fatal=True))
        self._closed(None, error.message)

    def _closed(self, code: int | None, reason: str) -> None:
        # Every caller runs only before CLOSED (receive_data, next_event and the timers stop
        # there), so ConnectionClosed is reported once; tests/core/test_state_machines.py checks it.
        self._enter(ClientState.CLOSED)
        self._events.append(ConnectionClosed(code, reason))
