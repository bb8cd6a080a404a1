"""Client connections with the same pump contract: a WebSocket client and an SSE client.

For tests, benchmarks and Python users. The WebSocket client decodes the diaproto wire
protocol when the server picks ``diaproto.v1``; the SSE client tracks the last event id so a
reconnect can resume with ``Last-Event-ID``.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

import h11
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

from diaproto.config import ConnectionConfig
from diaproto.errors import LocalProtocolError, RemoteProtocolError
from diaproto.events import (
    ConnectionClosed,
    Event,
    Headers,
    Rejected,
    RemoteError,
    SseResponseStarted,
    WebSocketAccepted,
    WebSocketMessage,
)
from diaproto.headers import decode_headers, encode_headers, header_values
from diaproto.keepalive import Due, Keepalive
from diaproto.sse import SseParser
from diaproto.wire import (
    SUBPROTOCOL,
    ClientMessage,
    WireError,
    decode_records,
    decode_server_message,
    encode_message,
)
from diaproto.wsframes import BoundedPerMessageDeflate, MessageAssembler


class ClientState(Enum):
    CONNECTING = "connecting"  # request sent, no answer yet
    OPEN = "open"
    CLOSING = "closing"  # our close frame is out
    CLOSED = "closed"


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
        self._reject: tuple[int, Headers, list[bytes]] | None = None
        self._wire = False

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
            self.close(now, 1011, "keepalive ping timeout")
        elif due is Due.IDLE_TIMEOUT:
            self.close(now, 1000, "idle timeout")
        elif due is Due.CLOSE_TIMEOUT:
            self._closed(1006, "close handshake timed out")

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

    def close(self, now: float, code: int = 1000, reason: str = "") -> None:
        if self.state is ClientState.OPEN and self._ws.state is WsState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=reason))
            self.state = ClientState.CLOSING
            self._keepalive.on_close_sent(now)
        elif self.state is ClientState.CONNECTING:
            self._closed(None, reason or "closed before the handshake completed")

    # --- inbound ---------------------------------------------------------------------------

    def _pull(self) -> bool:
        event = next(iter(self._ws.events()), None)
        if event is None:
            return False
        if isinstance(event, AcceptConnection):
            self.state = ClientState.OPEN
            self.subprotocol = event.subprotocol
            self._wire = event.subprotocol == SUBPROTOCOL
            self._keepalive.on_activity(self._keepalive.last_received)
            self._events.append(
                WebSocketAccepted(event.subprotocol, decode_headers(event.extra_headers))
            )
        elif isinstance(event, RejectConnection):
            self._reject = (event.status_code, decode_headers(event.headers), [])
            if not event.has_body:
                self._rejected()
        elif isinstance(event, RejectData):
            assert self._reject is not None
            self._reject[2].append(bytes(event.data))
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
        if self._ws.state in (WsState.OPEN, WsState.LOCAL_CLOSING) and event.code != 1006:
            # wsproto reports a frame it could not parse as a close; it is an error.
            self._protocol_failure(RemoteProtocolError(event.reason or "", close_code=event.code))
            return
        if self._ws.state is WsState.REMOTE_CLOSING:
            self._out += self._ws.send(event.response())
        self._closed(event.code, event.reason or "")

    def _protocol_failure(self, error: RemoteProtocolError) -> None:
        self._events.append(RemoteError(error, fatal=True))
        code = error.close_code or 1002
        if self._ws.state is WsState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=error.message[:120]))
        self._closed(code, error.message)

    def _rejected(self) -> None:
        assert self._reject is not None
        status, headers, body = self._reject
        self._events.append(Rejected(status, headers, b"".join(body)))
        self._closed(None, f"rejected with {status}")

    def _fail(self, error: RemoteProtocolError) -> None:
        self._events.append(RemoteError(error, fatal=True))
        self._closed(None, error.message)

    def _closed(self, code: int | None, reason: str) -> None:
        # Every caller runs only before CLOSED (receive_data, next_event and the timers stop
        # there), so ConnectionClosed is reported once; tests/core/test_state_machines.py checks it.
        self.state = ClientState.CLOSED
        self._events.append(ConnectionClosed(code, reason))


class SseClientConnection:
    """An SSE client for one request; reconnect with ``last_event_id`` to resume."""

    def __init__(
        self,
        now: float,
        host: str,
        target: str = "/",
        *,
        method: str = "GET",
        headers: Headers = (),
        body: bytes = b"",
        last_event_id: str | None = None,
        config: ConnectionConfig | None = None,
    ) -> None:
        self.config = config or ConnectionConfig()
        self.state = ClientState.CONNECTING
        self._h11 = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=self.config.limits.max_header_bytes
        )
        request_headers: list[tuple[str, str]] = [
            ("host", host),
            ("accept", "text/event-stream"),
            ("cache-control", "no-store"),
        ]
        if last_event_id is not None:
            request_headers.append(("last-event-id", last_event_id))
        if body or method not in ("GET", "HEAD"):
            request_headers.append(("content-length", str(len(body))))
        request_headers.extend(headers)
        self._out = bytearray(
            self._h11.send(
                h11.Request(method=method, target=target, headers=encode_headers(request_headers))
            )
            or b""
        )
        if body:
            self._out += self._h11.send(h11.Data(data=body)) or b""
        self._out += self._h11.send(h11.EndOfMessage()) or b""
        limit = self.config.limits.max_message_bytes
        self._parser = SseParser(max_line=limit, max_event=limit, last_event_id=last_event_id)
        self._events: deque[Event] = deque()
        self._started = now
        self._last_received = now
        self._reject: tuple[int, Headers, list[bytes]] | None = None

    @property
    def last_event_id(self) -> str | None:
        """The id to send as ``Last-Event-ID`` when reconnecting."""
        return self._parser.last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection delay the server asked for (milliseconds)."""
        return self._parser.retry

    def receive_data(self, data: bytes, now: float) -> None:
        if data and self.state is not ClientState.CLOSED:
            self._last_received = now
            self._h11.receive_data(data)

    def receive_eof(self, now: float) -> None:
        if self.state is not ClientState.CLOSED:
            self._h11.receive_data(b"")

    def next_event(self) -> Event | None:
        while not self._events:
            message = self._parser.next_event()
            if message is not None:
                return message
            if self.state is ClientState.CLOSED or not self._pull():
                break
        return self._events.popleft() if self._events else None

    def data_to_send(self, now: float) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_deadline(self) -> float | None:
        timeouts = self.config.timeouts
        if self.state is ClientState.CONNECTING and timeouts.handshake is not None:
            return self._started + timeouts.handshake
        if self.state is ClientState.OPEN and timeouts.idle is not None:
            return self._last_received + timeouts.idle
        return None

    def handle_timer(self, now: float) -> None:
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            what = "no response" if self.state is ClientState.CONNECTING else "no bytes"
            self._fail(RemoteProtocolError(f"{what} from the server in time"))

    @property
    def finished(self) -> bool:
        return self.state is ClientState.CLOSED

    def close(self, now: float) -> None:
        """Stop listening; the adapter then closes the transport."""
        self._closed("closed by the application")

    def _pull(self) -> bool:
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            self._fail(RemoteProtocolError(f"invalid response: {exc}"))
            return True
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return False
        if isinstance(event, h11.Response):
            headers = decode_headers(event.headers)
            content_type = ",".join(header_values(headers, "content-type"))
            if event.status_code == 200 and content_type.startswith("text/event-stream"):
                self.state = ClientState.OPEN
                self._events.append(SseResponseStarted(event.status_code, headers))
            else:
                self._reject = (event.status_code, headers, [])
        elif isinstance(event, h11.Data):
            if self._reject is not None:
                self._reject[2].append(bytes(event.data))
            else:
                try:
                    self._parser.feed(bytes(event.data))
                except RemoteProtocolError as exc:
                    self._fail(exc)
        elif isinstance(event, h11.EndOfMessage):
            if self._reject is not None:
                status, headers, body = self._reject
                self._events.append(Rejected(status, headers, b"".join(body)))
            self._closed("the server ended the stream")
        # Nothing else matters: 1xx answers are skipped, and we stop at the end of the body.
        return True

    def _fail(self, error: RemoteProtocolError) -> None:
        self._events.append(RemoteError(error, fatal=True))
        self._closed(error.message)

    def _closed(self, reason: str) -> None:
        if self.state is not ClientState.CLOSED:
            self.state = ClientState.CLOSED
            self._events.append(ConnectionClosed(None, reason))
