"""The server side of one TCP connection: HTTP/1.1 front, then WebSocket, SSE or a plain answer.

The pump contract (every adapter is this loop)::

    conn.receive_data(data, now)      # buffers only
    conn.receive_eof(now)
    conn.next_event() -> Event | None  # one at a time; the state never runs ahead
    conn.data_to_send(now) -> bytes    # b"" when nothing is due
    conn.next_deadline() -> float | None
    conn.handle_timer(now)

plus ``set_transport_buffered(n)`` to report bytes the transport still holds, and
``finished`` to know when to close the transport (after writing ``data_to_send``).
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from enum import Enum

import h11
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.events import Event as WsEvent
from wsproto.extensions import Extension
from wsproto.utilities import generate_accept_token

from diaproto.config import ConnectionConfig
from diaproto.errors import LocalProtocolError, RemoteProtocolError, ReplayGap
from diaproto.events import (
    ConnectionClosed,
    Event,
    Headers,
    RemoteError,
    Request,
    SlowConsumer,
    SseRequest,
    WebSocketMessage,
    WebSocketRequest,
)
from diaproto.http_util import (
    decode_headers,
    encode_headers,
    error_response_body,
    header_tokens,
    header_values,
)
from diaproto.keepalive import Due, Keepalive
from diaproto.outbound import Framer, Payload, body_frame, payload_size, sse_frame, websocket_framer
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Policy, Priority, Scheduler
from diaproto.sse import SSE_RESPONSE_HEADERS, SseEvent, encode_comment, encode_retry
from diaproto.wire import (
    MAX_ID,
    SUBPROTOCOL,
    CancelStream,
    ErrorCode,
    GrantCredit,
    StreamEnd,
    StreamError,
    StreamOpened,
    WireError,
    decode_client_message,
    encode_message,
)
from diaproto.wsframes import (
    CLOSE_MESSAGE_TOO_BIG,
    MessageAssembler,
    negotiate_deflate,
    wsproto_encoder,
)

CONTROL_STREAM = -1  # internal stream for control messages; never a wire stream id
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011


class State(Enum):
    AWAITING_REQUEST = "awaiting_request"  # reading a request, or idle between requests
    REQUEST_RECEIVED = "request_received"  # the application owes an answer
    STREAMING = "streaming"  # an SSE or chunked-body response is open
    WEBSOCKET = "websocket"
    CLOSING = "closing"  # our WebSocket close frame is out; waiting for the peer's
    CLOSED = "closed"


class ServerConnection:
    """One server-side connection. See the module docstring for the pump contract."""

    def __init__(self, now: float, config: ConnectionConfig | None = None) -> None:
        self.config = config or ConnectionConfig()
        self.state = State.AWAITING_REQUEST
        self.subprotocol: str | None = None
        self.extensions: str | None = None  # the Sec-WebSocket-Extensions we answered with
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.config.limits.max_header_bytes
        )
        self._events: deque[Event] = deque()
        self._out = bytearray()
        self._scheduler: Scheduler[Payload] = Scheduler(self.config.scheduler)
        self._keepalive = Keepalive(self.config.timeouts, now)
        self._cycle_started = now
        self._first_cycle = True
        self._cycle_bytes = 0  # request bytes seen in this cycle (0: idle keep-alive)
        self._held_inbound = 0  # bytes received while a request is being answered
        self._h11_fed = 0  # bytes handed to h11 in all
        self._head_start = 0  # where (in those bytes) the current request's head begins
        self._request: h11.Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._pending: Event | None = None  # the request event awaiting an answer
        self._eof = False
        self._ws: WsConnection | None = None
        self._ws_events: Iterator[WsEvent] | None = None
        self._assembler = MessageAssembler(self.config.limits.max_message_bytes)
        self._wire = False
        self._framer: Framer | None = None
        self._sse = False
        self._last_sse_write = now
        self._ending = False
        self._transport_buffered = 0
        self._closed_reported = False

    # --- the pump ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Buffer bytes from the peer. Never raises for anything the peer sent."""
        if not data or self.state is State.CLOSED or self._eof:
            return
        self._keepalive.on_receive(now)
        if self._ws is not None:
            self._ws.receive_data(data)
        else:
            if self.state is State.AWAITING_REQUEST:
                if not self._cycle_bytes and not self._first_cycle:
                    self._cycle_started = now  # a keep-alive request is timed from its first byte
                self._cycle_bytes += len(data)
            else:
                self._held_inbound += len(data)  # pipelined while we answer: bounded
            self._h11_fed += len(data)
            self._h11.receive_data(data)

    def receive_eof(self, now: float) -> None:
        """The peer half-closed (or the transport is gone)."""
        if self._eof or self.state is State.CLOSED:
            return
        self._eof = True
        if self._ws is not None:
            self._ws.receive_data(None)
        else:
            self._h11.receive_data(b"")

    def next_event(self) -> Event | None:
        while True:
            # ConnectionClosed is always the last word: the streams' own events go first.
            if self._events and not isinstance(self._events[0], ConnectionClosed):
                return self._events.popleft()
            event = self._scheduler.next_event()
            if event is not None:
                if isinstance(event, SlowConsumer):
                    self._abort(CLOSE_POLICY, "slow consumer")
                if getattr(event, "stream_id", None) == CONTROL_STREAM:
                    continue  # our own control stream is no business of the application
                return event
            if self._events:
                return self._events.popleft()
            if not self._advance():
                return None

    def data_to_send(self, now: float) -> bytes:
        if self._framer is not None and self.state in (State.STREAMING, State.WEBSOCKET):
            self._scheduler.set_in_flight(len(self._out) + self._transport_buffered)
            batch = self._scheduler.take(now)
            if batch:
                self._keepalive.on_activity(now)
                self._write_body(self._framer(batch))
            if self._ending and self._scheduler.queued_bytes() == 0:
                self._finish_response()
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        if self._sse:
            self._last_sse_write = now
        return data

    def set_transport_buffered(self, nbytes: int) -> None:
        """Bytes the transport still holds unwritten; the write window and budget count them.

        Counted at once, so a write blocked on a slow peer holds back the next batch and its
        bytes are inside ``buffered_bytes`` while it waits."""
        self._transport_buffered = max(nbytes, 0)
        if self.state in (State.STREAMING, State.WEBSOCKET):
            self._scheduler.set_in_flight(len(self._out) + self._transport_buffered)

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        timeouts = self.config.timeouts
        if self.state is State.AWAITING_REQUEST:
            if self._cycle_bytes or self._first_cycle:
                if timeouts.handshake is not None:
                    deadlines.append(self._cycle_started + timeouts.handshake)
            elif timeouts.idle is not None:
                deadlines.append(self._cycle_started + timeouts.idle)
        elif self.state in (State.WEBSOCKET, State.CLOSING):
            deadline = self._keepalive.deadline()
            if deadline is not None:
                deadlines.append(deadline)
        if self._sse and self.state is State.STREAMING and timeouts.sse_heartbeat is not None:
            deadlines.append(self._last_sse_write + timeouts.sse_heartbeat)
        if self.state in (State.STREAMING, State.WEBSOCKET):
            deadline = self._scheduler.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        timeouts = self.config.timeouts
        if self.state is State.AWAITING_REQUEST:
            if self._cycle_bytes or self._first_cycle:
                if (
                    timeouts.handshake is not None
                    and now >= self._cycle_started + timeouts.handshake
                ):
                    if self._cycle_bytes:
                        self._refuse(
                            RemoteProtocolError("request not complete in time", http_status=408)
                        )
                    else:
                        self._close_quietly("no request in time")
            elif timeouts.idle is not None and now >= self._cycle_started + timeouts.idle:
                self._close_quietly("idle keep-alive connection")
        elif self.state in (State.WEBSOCKET, State.CLOSING):
            self._websocket_timer(now)
        if self.state in (State.STREAMING, State.WEBSOCKET):
            self._scheduler.handle_timer(now)
        if (
            self._sse
            and self.state is State.STREAMING
            and timeouts.sse_heartbeat is not None
            and now >= self._last_sse_write + timeouts.sse_heartbeat
        ):
            # Bytes still in flight mean the stream is not idle: no heartbeat piles up
            # behind a frozen client, and the deadline moves on instead of staying due.
            if not self._out and self._transport_buffered == 0:
                self._write_body(encode_comment())
            self._last_sse_write = now

    @property
    def finished(self) -> bool:
        """True once the transport should be closed (after writing ``data_to_send``)."""
        return self.state is State.CLOSED

    @property
    def wants_data(self) -> bool:
        """False while the peer's unread bytes are at their bound: stop reading for now."""
        if self.state is State.CLOSED:
            return False
        return self._held_inbound < self.config.limits.max_buffered_inbound

    # --- answering requests ----------------------------------------------------------------

    def respond(self, status: int, headers: Headers = (), body: bytes = b"", *, now: float) -> None:
        """A complete response to the pending request (any kind, including a refused upgrade)."""
        self._expect_pending()
        response_headers = [*headers, ("content-length", str(len(body)))]
        self._h11_send(_response(status, response_headers))
        if body and not self._answering_head():  # HEAD: the length is told, the body is not
            self._h11_send(h11.Data(data=body))
        self._h11_send(h11.EndOfMessage())
        self._pending = None
        self._next_cycle(now)

    def start_response(self, status: int, headers: Headers = (), *, now: float) -> None:
        """Open a streamed body (chunked): queue bytes with ``send`` on streams you open."""
        self._expect_pending()
        self._h11_send(_response(status, headers))
        self._start_streaming(body_frame, sse=False)

    def accept_sse(self, headers: Headers = (), *, now: float) -> None:
        """Answer the pending request with an SSE stream."""
        self._expect_pending()
        self._h11_send(_response(200, [*SSE_RESPONSE_HEADERS, *headers]))
        self._start_streaming(sse_frame, sse=True)
        self._last_sse_write = now
        if self.config.sse_retry_ms is not None:
            self._write_body(encode_retry(self.config.sse_retry_ms))

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
        trailing, _ = self._h11.trailing_data
        extensions: list[Extension] = [] if deflate is None else [deflate[0]]
        ws = WsConnection(ConnectionType.SERVER, extensions, trailing_data=trailing)
        self._ws = ws
        self._pending = None
        self.subprotocol = subprotocol
        self.extensions = None if deflate is None else deflate[1]
        self._wire = subprotocol == SUBPROTOCOL
        self.state = State.WEBSOCKET
        # The fast encoder writes plain frames only: an extension's frames go through wsproto.
        self._framer = websocket_framer(self._wire, wsproto_encoder(ws) if extensions else None)
        self._keepalive.on_activity(now)
        self._open_control_stream(now)

    # --- streams ---------------------------------------------------------------------------

    def open_stream(
        self,
        stream_id: int,
        now: float,
        *,
        priority: Priority = Priority.STREAM,
        policy: Policy = Policy.PAUSE,
        limit: int | None = None,
        credit: int | None = None,
        grace: float = 5.0,
        replay: ReplayBuffer[Payload] | None = None,
        record: bool = True,
        token: str | None = None,
    ) -> None:
        """Open an outbound stream. With the wire protocol this also sends ``open``."""
        self._expect_output()
        if not 0 <= stream_id <= MAX_ID:
            raise LocalProtocolError("stream ids are integers in 0..2**32-1")
        self._scheduler.open_stream(
            stream_id,
            now,
            priority=priority,
            policy=policy,
            limit=limit,
            credit=credit,
            grace=grace,
            replay=replay,
            record=record,
        )
        if self._wire:
            self._control(encode_message(StreamOpened(stream_id, token)), now)

    def send(
        self, stream_id: int, payload: Payload, now: float, *, key: Hashable | None = None
    ) -> int | None:
        """Queue one message on a stream; returns its sequence number (None: dropped).

        WebSocket: bytes are data chunks (wire protocol) or binary messages, str is a text
        message. SSE: bytes are wire ``data`` events, str a plain event, SseEvent as is.
        Streamed body: bytes (or str, as UTF-8).
        """
        self._expect_output()
        if isinstance(payload, SseEvent) and not self._sse:
            raise LocalProtocolError("an SseEvent can only be sent on an SSE response")
        if self._wire and not isinstance(payload, bytes):
            raise LocalProtocolError("with diaproto.v1, send() takes data chunks (bytes)")
        return self._scheduler.enqueue(stream_id, payload, payload_size(payload), now, key=key)

    def end_stream(self, stream_id: int, now: float) -> None:
        """No more messages on this stream; the wire protocol's ``end`` follows its data."""
        self._expect_output()
        last_seq = self._scheduler.last_seq(stream_id)
        if self._wire:
            end = encode_message(StreamEnd(stream_id, last_seq))
            self._scheduler.enqueue(stream_id, end, len(end), now)
        elif self._sse:
            data = encode_message(StreamEnd(stream_id, last_seq))
            event = SseEvent(data=data, event="end")
            self._scheduler.enqueue(stream_id, event, payload_size(event), now)
        self._scheduler.finish_stream(stream_id)

    def fail_stream(self, stream_id: int | None, code: str, message: str, now: float) -> None:
        """Drop what the stream still has queued and report an error ahead of other data."""
        self._expect_output()
        if stream_id is not None:
            self._scheduler.discard_stream(stream_id)
        text = encode_message(StreamError(stream_id, code, message))
        if self._sse:
            event = SseEvent(data=text, event="error")
            self._scheduler.enqueue(CONTROL_STREAM, event, payload_size(event), now)
        elif self._ws is not None:
            self._control(text, now)

    def resume_stream(self, stream_id: int, after: int, now: float) -> bool:
        """Re-send what the client missed after ``after`` (see :meth:`Scheduler.resume`).

        On a replay gap the stream fails with ``replay_gap`` and this returns False.
        """
        self._expect_output()
        try:
            self._scheduler.resume(stream_id, after, now)
        except ReplayGap as gap:
            self.fail_stream(stream_id, ErrorCode.REPLAY_GAP, str(gap), now)
            return False
        return True

    def end_response(self, now: float) -> None:
        """End an SSE or streamed response once everything queued has been sent."""
        if self.state is not State.STREAMING:
            raise LocalProtocolError("no streamed response is open")
        for stream_id in self._scheduler.stream_ids:
            self._scheduler.finish_stream(stream_id)
        self._ending = True

    def close(self, now: float, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close now. A WebSocket gets a close frame (queued data is dropped); otherwise the
        transport is closed after ``data_to_send``."""
        if self.state is State.CLOSED:
            return
        if self.state is State.WEBSOCKET:
            self._start_close(code, reason, now)
        elif self.state is not State.CLOSING:
            self._set_closed(None, reason or "closed by the application")

    @property
    def scheduler(self) -> Scheduler[Payload]:
        """The outbound scheduler (metrics, pause state, credit of each stream)."""
        return self._scheduler

    # --- inbound ---------------------------------------------------------------------------

    def _advance(self) -> bool:
        """Make one step of progress on buffered input; False when there is nothing to do."""
        if self.state is State.AWAITING_REQUEST:
            return self._advance_http()
        if self.state in (State.WEBSOCKET, State.CLOSING):
            return self._advance_websocket()
        if self._eof and self.state in (State.STREAMING, State.REQUEST_RECEIVED):
            self._set_closed(None, "the client went away")
            return True
        return False

    def _advance_http(self) -> bool:
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            message = self._head_too_large() if status == 431 else str(exc)
            self._refuse(RemoteProtocolError(message, http_status=status))
            return True
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return False
        if isinstance(event, h11.Request):
            self._request = event
            self._body = []
            self._body_size = 0
            length = _content_length(event)
            # h11 bounds only a head that arrives in pieces; this bounds one that came whole.
            head_end = self._h11_fed - _h11_buffered(self._h11)
            if head_end - self._head_start > self.config.limits.max_header_bytes:
                self._refuse(RemoteProtocolError(self._head_too_large(), http_status=431))
            elif length is not None and length > self.config.limits.max_body_bytes:
                self._refuse(RemoteProtocolError("request body too large", http_status=413))
            elif self._h11.they_are_waiting_for_100_continue:
                self._h11_send(h11.InformationalResponse(status_code=100, headers=[]))
        elif isinstance(event, h11.Data):
            self._body_size += len(event.data)
            if self._body_size > self.config.limits.max_body_bytes:
                self._refuse(RemoteProtocolError("request body too large", http_status=413))
            else:
                self._body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            self._route_request()
        else:  # h11.ConnectionClosed, the only other event h11 gives a server
            self._set_closed(None, "the client closed the connection")
        return True

    def _route_request(self) -> None:
        request = self._request
        assert request is not None
        headers = decode_headers(request.headers)
        method = request.method.decode("ascii")
        target = request.target.decode("ascii", errors="replace")
        body = b"".join(self._body)
        self._body = []
        event: Event
        if method == "CONNECT":
            # h11 takes any 2xx answer to CONNECT as the start of a tunnel, which we do not
            # serve: answering it would leave the connection stuck.
            self._refuse(RemoteProtocolError("CONNECT is not supported", http_status=405))
            return
        if "websocket" in header_tokens(headers, "upgrade"):
            error = _websocket_handshake_error(method, headers)
            if error is not None:
                self._pending = Request(method, target, headers, body)
                self.state = State.REQUEST_RECEIVED
                self._refuse(error)
                return
            offered = tuple(
                proto
                for value in header_values(headers, "sec-websocket-protocol")
                for proto in (p.strip() for p in value.split(","))
                if proto
            )
            event = WebSocketRequest(target, headers, offered)
        elif "text/event-stream" in ",".join(header_values(headers, "accept")):
            last_id = next(iter(header_values(headers, "last-event-id")), None)
            event = SseRequest(method, target, headers, body, last_id)
        else:
            event = Request(method, target, headers, body)
        self._pending = event
        self.state = State.REQUEST_RECEIVED
        self._events.append(event)

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
            RemoteProtocolError(f"message larger than {limit}", close_code=CLOSE_MESSAGE_TOO_BIG)
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
        code = error.close_code or CLOSE_POLICY
        assert self._ws is not None
        if self._ws.state is WsState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=error.message[:120]))
        self._set_closed(code, error.message)

    def _websocket_timer(self, now: float) -> None:
        assert self._ws is not None
        due = self._keepalive.due(now)
        if due is Due.SEND_PING:
            self._out += self._ws.send(Ping(payload=b"diaproto"))
            self._keepalive.on_ping_sent(now)
        elif due is Due.PING_TIMEOUT:
            self._start_close(CLOSE_INTERNAL, "keepalive ping timeout", now)
        elif due is Due.IDLE_TIMEOUT:
            self._start_close(CLOSE_NORMAL, "idle timeout", now)
        elif due is Due.CLOSE_TIMEOUT:
            self._set_closed(1006, "close handshake timed out")

    # --- outbound helpers ------------------------------------------------------------------

    def _expect_pending(self) -> Event:
        if self.state is not State.REQUEST_RECEIVED or self._pending is None:
            raise LocalProtocolError(f"no request is waiting for an answer (state {self.state})")
        return self._pending

    def _expect_output(self) -> None:
        if self.state not in (State.STREAMING, State.WEBSOCKET):
            raise LocalProtocolError(f"no open stream to send on (state {self.state})")

    def _h11_send(self, event: h11.Event) -> None:
        try:
            data = self._h11.send(event)
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        if data:
            self._out += data

    def _write_body(self, data: bytes) -> None:
        if self._ws is not None:
            self._out += data
        elif not self._answering_head():  # a HEAD response has no body to write
            self._h11_send(h11.Data(data=data))

    def _answering_head(self) -> bool:
        return self._request is not None and self._request.method == b"HEAD"

    def _start_streaming(self, framer: Framer, *, sse: bool) -> None:
        self._pending = None
        self.state = State.STREAMING
        self._framer = framer
        self._sse = sse
        self._ending = False
        self._scheduler = Scheduler(self.config.scheduler)
        self._open_control_stream(self._keepalive.last_received)

    def _open_control_stream(self, now: float) -> None:
        self._scheduler.open_stream(
            CONTROL_STREAM,
            now,
            priority=Priority.CONTROL,
            policy=Policy.DISCONNECT,
            limit=self.config.scheduler.max_buffered,
            grace=0.0,
        )

    def _control(self, text: str, now: float) -> None:
        self._scheduler.enqueue(CONTROL_STREAM, text, len(text), now)

    def _finish_response(self) -> None:
        self._h11_send(h11.EndOfMessage())
        self._framer = None
        self._sse = False
        self._ending = False
        self._next_cycle(self._keepalive.last_received)

    def _next_cycle(self, now: float) -> None:
        if self._h11.our_state is h11.MUST_CLOSE or self._h11.their_state is h11.MUST_CLOSE:
            self._set_closed(None, "response complete; the connection does not persist")
            return
        # Both sides are DONE here: events (and so answers) come only after a whole request.
        self._h11.start_next_cycle()
        self._request = None
        self.state = State.AWAITING_REQUEST
        self._first_cycle = False
        self._cycle_started = now
        buffered = _h11_buffered(self._h11)  # the next request's bytes, already here
        self._cycle_bytes = buffered
        self._head_start = self._h11_fed - buffered
        self._held_inbound = 0

    def _refuse(self, error: RemoteProtocolError) -> None:
        """Answer a bad request with its status and close; report it as an event."""
        self._events.append(RemoteError(error, fatal=True))
        status = error.http_status or 400
        headers: list[tuple[str, str]] = [
            ("content-type", "text/plain; charset=utf-8"),
            ("connection", "close"),
        ]
        if status == 426:
            headers.append(("sec-websocket-version", "13"))
        body = error_response_body(status, error.message)
        headers.append(("content-length", str(len(body))))
        self._h11_send(h11.Response(status_code=status, headers=encode_headers(headers)))
        if not self._answering_head():
            self._h11_send(h11.Data(data=body))
        self._h11_send(h11.EndOfMessage())
        self._pending = None
        self._set_closed(None, error.message)

    def _head_too_large(self) -> str:
        return f"request head larger than {self.config.limits.max_header_bytes} bytes"

    def _close_quietly(self, reason: str) -> None:
        self._set_closed(None, reason)

    def _start_close(self, code: int, reason: str, now: float) -> None:
        assert self._ws is not None
        for stream_id in self._scheduler.stream_ids:
            self._scheduler.discard_stream(stream_id)
        if self._ws.state is WsState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=reason))
            self.state = State.CLOSING
            self._keepalive.on_close_sent(now)
        else:
            self._set_closed(code, reason)

    def _abort(self, code: int, reason: str) -> None:
        if self.state is State.WEBSOCKET:
            self._start_close(code, reason, self._keepalive.last_received)
        else:  # SSE or a streamed body: closing the transport is the only signal there is
            self._set_closed(None, reason)

    def _set_closed(self, code: int | None, reason: str) -> None:
        self.state = State.CLOSED
        self._framer = None
        for stream_id in self._scheduler.stream_ids:
            self._scheduler.discard_stream(stream_id)  # each reports StreamFinished
        if not self._closed_reported:
            self._closed_reported = True
            self._events.append(ConnectionClosed(code, reason))


def _response(status: int, headers: Iterable[tuple[str, str]]) -> h11.Response:
    """An h11 response; a bad status or header is the caller's mistake, in our error type."""
    try:
        return h11.Response(status_code=status, headers=encode_headers(headers))
    except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
        raise LocalProtocolError(f"invalid response: {exc}") from exc


def _h11_buffered(conn: h11.Connection) -> int:
    """How many received bytes h11 has not parsed yet.

    ``trailing_data``, h11's public view, copies them: per request that would make a long
    run of pipelined requests cost quadratic time. Only the length is needed here.
    """
    return len(conn._receive_buffer)


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has already checked it is a number
    return None


def _websocket_handshake_error(method: str, headers: Headers) -> RemoteProtocolError | None:
    if method != "GET":
        return RemoteProtocolError("a WebSocket upgrade must be a GET", http_status=400)
    if "upgrade" not in header_tokens(headers, "connection"):
        return RemoteProtocolError("missing 'Connection: Upgrade'", http_status=400)
    versions = header_values(headers, "sec-websocket-version")
    if versions != ["13"]:
        return RemoteProtocolError("unsupported WebSocket version", http_status=426)
    keys = header_values(headers, "sec-websocket-key")
    try:
        valid_key = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except ValueError:  # binascii.Error, or a key with non-ASCII characters
        valid_key = False
    if not valid_key:
        return RemoteProtocolError("invalid Sec-WebSocket-Key", http_status=400)
    return None
