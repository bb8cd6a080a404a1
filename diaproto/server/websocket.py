"""The WebSocket session of a server connection, on wsproto: the upgrade, messages (and the
diaproto.v1 messages among them), oversize refusal, ping and keepalive, the close handshake."""

from __future__ import annotations

from collections.abc import Iterator

import h11
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.events import Event as WsEvent
from wsproto.extensions import Extension
from wsproto.utilities import generate_accept_token

from diaproto.errors import CloseCode, LocalProtocolError, RemoteProtocolError
from diaproto.events import Headers, RemoteError, WebSocketMessage, WebSocketRequest
from diaproto.headers import encode_headers, header_values
from diaproto.keepalive import Due
from diaproto.server.core import ConnectionCore
from diaproto.server.framing import websocket_framer
from diaproto.server.state import State
from diaproto.wire import (
    SUBPROTOCOL,
    CancelStream,
    ErrorCode,
    GrantCredit,
    StreamError,
    WireError,
    decode_client_message,
    encode_message,
)
from diaproto.wsframes import MessageAssembler, negotiate_deflate, wsproto_encoder


class WebSocketSession(ConnectionCore):
    """From the accepted upgrade to the close handshake."""

    __slots__ = ()  # in ConnectionCore

    def _init_websocket_session(self) -> None:
        self.subprotocol: str | None = None
        self.extensions: str | None = None  # the Sec-WebSocket-Extensions we answered with
        self._ws_events: Iterator[WsEvent] | None = None
        self._assembler = MessageAssembler(self.config.limits.max_message_bytes)

    def accept_websocket(
        self,
        subprotocol: str | None = None,
        headers: Headers = (),
        *,
        now: float,
        compress: bool = False,
    ) -> None:
        """Complete the pending upgrade. ``subprotocol`` must be one the client offered.

        ``compress``: use permessage-deflate when the client offers it (``extensions`` then
        holds the negotiated header value); every message is compressed, through wsproto.
        """
        pending = self._expect_pending()
        if not isinstance(pending, WebSocketRequest):
            raise LocalProtocolError("the pending request is not a WebSocket upgrade")
        if subprotocol is not None and subprotocol not in pending.subprotocols:
            raise LocalProtocolError(f"the client did not offer subprotocol {subprotocol!r}")
        deflate = None
        if compress:
            offers = header_values(pending.headers, "sec-websocket-extensions")
            deflate = negotiate_deflate(offers, self.config.limits.max_message_bytes)
        key = (pending.header("sec-websocket-key") or "").encode()
        response_headers: list[tuple[str, str]] = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", generate_accept_token(key).decode()),
        ]
        if subprotocol is not None:
            response_headers.append(("sec-websocket-protocol", subprotocol))
        if deflate is not None:
            response_headers.append(("sec-websocket-extensions", deflate[1]))
        response_headers.extend(headers)
        try:
            switch = h11.InformationalResponse(
                status_code=101, headers=encode_headers(response_headers)
            )
        except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
            raise LocalProtocolError(f"invalid response: {exc}") from exc
        self._h11_send(switch)
        trailing, _ = self._http.trailing_data
        extensions: list[Extension] = [] if deflate is None else [deflate[0]]
        ws = WsConnection(ConnectionType.SERVER, extensions, trailing_data=trailing)
        self._ws = ws
        self._pending = None
        self._h11 = None  # the HTTP phase is over: nothing reads or writes through h11 again
        self._request = None
        self.subprotocol = subprotocol
        self.extensions = None if deflate is None else deflate[1]
        self._wire = subprotocol == SUBPROTOCOL
        self._enter(State.WEBSOCKET)
        # The fast encoder writes plain frames only: an extension's frames go through wsproto.
        self._framer = websocket_framer(self._wire, wsproto_encoder(ws) if extensions else None)
        self._keepalive.on_activity(now)

    # --- inbound ---------------------------------------------------------------------------

    def _advance_websocket(self) -> bool:
        assert self._ws is not None
        if self._ws_events is None:
            self._ws_events = self._ws.events()
        event = next(self._ws_events, None)
        if event is None:
            self._ws_events = None
            return self._refuse_declared_oversize()
        if isinstance(event, (TextMessage, BytesMessage)):
            try:
                message = self._assembler.feed(event)
            except RemoteProtocolError as exc:
                self._protocol_failure(exc)
                return True
            if message is not None:
                self._on_message(message)
        elif isinstance(event, Ping):
            if self._ws.state is WsState.OPEN:  # wsproto sends no pong after our close frame
                self._out += self._ws.send(Pong(payload=event.payload))
        elif isinstance(event, CloseConnection):
            self._on_close_frame(event)
        # Pong needs nothing: any received byte already counted as life.
        return True

    def _refuse_declared_oversize(self) -> bool:
        """Close 1009 as soon as a frame *header* declares more than the message limit.

        wsproto yields payload only as it arrives, so a peer declaring 2 GiB and sending
        nothing more would otherwise hold the connection until a timeout. wsproto keeps
        the parsed header on its frame decoder (an internal, pinned by ``wsproto<2``).
        """
        assert self._ws is not None
        decoder = self._ws._proto._frame_decoder
        header = decoder.header
        if header is None or self._ws.state is not WsState.OPEN:
            return False
        remaining = header.payload_len - decoder.payload_consumed
        if self._assembler.pending + remaining <= self._assembler.max_size:
            return False
        limit = self._assembler.max_size
        self._protocol_failure(
            RemoteProtocolError(
                f"message larger than {limit}", close_code=CloseCode.MESSAGE_TOO_BIG
            )
        )
        return True

    def _on_message(self, message: bytes | str) -> None:
        now = self._keepalive.last_received
        self._keepalive.on_activity(now)
        if not self._wire:
            self._events.append(WebSocketMessage(message))
            return
        try:
            if isinstance(message, bytes):
                raise WireError(ErrorCode.BAD_MESSAGE, "clients send no binary messages in v1")
            decoded = decode_client_message(message)
        except WireError as exc:
            # Only this message was bad: answer it, and leave the stream it named alone.
            self._events.append(RemoteError(exc, fatal=False))
            if self.state is State.WEBSOCKET:  # CLOSING: our close is out, nothing may follow
                error = StreamError(exc.stream_id, exc.code, exc.message)
                self._control(encode_message(error), now)
            return
        if isinstance(decoded, GrantCredit):
            # Applied here, so credit can never be forgotten; the event is for metrics.
            self._scheduler.grant_credit(decoded.stream_id, decoded.nbytes)
        if isinstance(decoded, CancelStream):
            self._scheduler.discard_stream(decoded.stream_id)
        self._events.append(decoded)

    def _on_close_frame(self, event: CloseConnection) -> None:
        assert self._ws is not None
        if self._ws.state in (WsState.OPEN, WsState.LOCAL_CLOSING):
            # wsproto reports a frame it could not parse as a close; it is an error.
            self._protocol_failure(RemoteProtocolError(event.reason or "", close_code=event.code))
            return
        if self._ws.state is WsState.REMOTE_CLOSING:
            self._out += self._ws.send(event.response())
        self._set_closed(event.code, event.reason or "")

    def _protocol_failure(self, error: RemoteProtocolError) -> None:
        self._events.append(RemoteError(error, fatal=True))
        code = error.close_code or CloseCode.POLICY_VIOLATION
        assert self._ws is not None
        if self._ws.state is WsState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=error.message[:120]))
        self._set_closed(code, error.message)

    # --- heartbeat and closing -------------------------------------------------------------

    def _websocket_timer(self, now: float) -> None:
        assert self._ws is not None
        due = self._keepalive.due(now)
        if due is Due.SEND_PING:
            self._out += self._ws.send(Ping(payload=b"diaproto"))
            self._keepalive.on_ping_sent(now)
        elif due is Due.PING_TIMEOUT:
            self._start_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout", now)
        elif due is Due.IDLE_TIMEOUT:
            self._start_close(CloseCode.NORMAL_CLOSURE, "idle timeout", now)
        elif due is Due.CLOSE_TIMEOUT:
            self._drop = True  # the peer did not answer: what we still hold is for no one
            self._set_closed(CloseCode.ABNORMAL_CLOSURE, "close handshake timed out")

    def _start_close(self, code: int, reason: str, now: float) -> None:
        assert self._ws is not None
        if self._ws.state is WsState.OPEN:
            self._frame_passed(now)  # it left before the close; nothing may follow the close
        for stream_id in self._scheduler.stream_ids:
            self._scheduler.discard_stream(stream_id)
        if self._ws.state is WsState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=reason))
            self._enter(State.CLOSING)
            self._keepalive.on_close_sent(now)
        else:
            self._set_closed(code, reason)
