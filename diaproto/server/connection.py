"""The server side of one TCP connection: HTTP/1.1 front, then WebSocket, SSE or a plain answer.

The pump contract (every adapter is this loop)::

    conn.receive_data(data, now)      # buffers only
    conn.receive_eof(now)
    conn.next_event() -> Event | None  # one at a time; the state never runs ahead
    conn.data_to_send(now) -> bytes    # b"" when nothing is due
    conn.next_deadline() -> float | None
    conn.handle_timer(now)

plus ``set_transport_buffered(n, now)`` to report bytes the transport still holds (the
write timeout runs while it holds some and the peer takes none of them), ``finished`` to know
when to close the transport (after writing ``data_to_send``), and ``flush_deadline``: once
finished, a transport still holding bytes at that time is aborted, never left waiting for a
peer that does not read.

:class:`ServerConnection` is the pump over three parts, each a mixin in a module of its own:
:mod:`diaproto.server.http` (h11), :mod:`diaproto.server.websocket` (wsproto) and
:mod:`diaproto.server.streams` (the application's streams); :mod:`diaproto.server.core` holds
what the parts share, :mod:`diaproto.server.state` the states and the changes between them.
"""

from __future__ import annotations

import h11

from diaproto.config import ConnectionConfig
from diaproto.errors import CloseCode
from diaproto.events import ConnectionClosed, Event, SlowConsumer
from diaproto.server.core import CONTROL_STREAM
from diaproto.server.http import HttpFront
from diaproto.server.state import State
from diaproto.server.streams import OutboundStreams
from diaproto.server.websocket import WebSocketSession
from diaproto.sse import SseEvent, encode_comment
from diaproto.wire import ErrorCode, StreamError, encode_message

__all__ = ["ServerConnection", "State"]


class ServerConnection(HttpFront, WebSocketSession, OutboundStreams):
    """One server-side connection. See the module docstring for the pump contract."""

    __slots__ = ()  # all in ConnectionCore

    def __init__(self, now: float, config: ConnectionConfig | None = None) -> None:
        super().__init__(now, config)
        self._init_http_front(now)
        self._init_websocket_session()

    # --- the pump ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Buffer bytes from the peer. Never raises for anything the peer sent."""
        if not data or self.state is State.CLOSED or self._eof:
            return
        self._clock = now
        self._keepalive.on_receive(now)
        if self._ws is not None:
            self._ws.receive_data(data)
        else:
            self._receive_http(data, now)

    def receive_eof(self, now: float) -> None:
        """The peer half-closed (or the transport is gone)."""
        if self._eof or self.state is State.CLOSED:
            return
        self._clock = now
        self._eof = True
        if self._ws is not None:
            self._ws.receive_data(None)
        else:
            self._http.receive_data(b"")

    def next_event(self) -> Event | None:
        while True:
            # ConnectionClosed is always the last word: the streams' own events go first.
            if self._events and not isinstance(self._events[0], ConnectionClosed):
                return self._events.pop(0)
            event = self._scheduler.next_event()
            if event is not None:
                if isinstance(event, SlowConsumer):
                    self._abort(CloseCode.POLICY_VIOLATION, "slow consumer")
                if getattr(event, "stream_id", None) == CONTROL_STREAM:
                    continue  # our own control stream is no business of the application
                return event
            if self._events:
                return self._events.pop(0)
            if not self._advance():
                return None

    def data_to_send(self, now: float) -> bytes:
        self._clock = now
        if self._framer is not None and self._output_open:
            passed, self._passed = self._passed, None
            if passed is not None and not self._scheduler.has_queued:
                # Let through with nothing queued since: it leaves alone. Its size stays in
                # flight until the transport reports.
                batch = [passed]
            else:
                self._scheduler.set_in_flight(len(self._out) + self._transport_buffered)
                batch = self._scheduler.take(now)
                if passed is not None:
                    batch.insert(0, passed)  # it left the scheduler first
            if passed is not None:
                self._scheduler.took(now)  # a batch, whatever take gave
            if batch:
                self._keepalive.on_activity(now)
                frames = self._framer(batch)
                if self._ws is not None and not self._out and not self._ending:
                    self._handed_out = True
                    self.bytes_sent += len(frames)
                    return frames  # the common case: the batch alone, with no copy
                self._write_body(frames)
            if self._ending and self._scheduler.queued_bytes() == 0:
                self._finish_response()
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        self._handed_out = True
        self.bytes_sent += len(data)
        if self._sse:
            self._last_sse_write = now
        return data

    def set_transport_buffered(self, nbytes: int, now: float | None = None) -> None:
        """Bytes the transport still holds unwritten; the write window and budget count them.

        Counted at once, so a write blocked on a slow peer holds back the next batch and its
        bytes are inside ``buffered_bytes`` while it waits. It also drives the write timeout:
        it runs from the first report of held bytes and restarts at each smaller report (the
        peer took some), so report again whenever the count may have dropped. ``now``
        defaults to the latest time this connection was given (a ``data_to_send`` just before
        the write, in every adapter)."""
        if now is not None:
            self._clock = now
        self._handed_out = False
        nbytes = max(nbytes, 0)
        if nbytes == 0:
            self._blocked_since = None
        elif self._blocked_since is None or nbytes < self._transport_buffered:
            self._blocked_since = self._clock  # a write began, or the peer took some of it
        self._transport_buffered = nbytes
        if self.state in (State.STREAMING, State.WEBSOCKET):
            self._scheduler.set_in_flight(len(self._out) + self._transport_buffered)

    @property
    def transport_buffered(self) -> int:
        """What the transport held at the last :meth:`set_transport_buffered`. A transport
        gains bytes only by a write, so when this is 0 it holds nothing until the next one."""
        return self._transport_buffered

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        timeouts = self.config.timeouts
        if self.state is State.AWAITING_REQUEST:
            deadline = self._request_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        elif self.state in (State.WEBSOCKET, State.CLOSING):
            deadline = self._keepalive.deadline()
            if deadline is not None:
                deadlines.append(deadline)
        if self._sse and self.state is State.STREAMING and timeouts.sse_heartbeat is not None:
            deadlines.append(self._last_sse_write + timeouts.sse_heartbeat)
        if self.state in (State.STREAMING, State.WEBSOCKET):
            # While the transport holds bytes nothing is taken from the scheduler, so its
            # linger deadline would only be a due deadline that nothing can clear.
            deadline = self._scheduler.next_deadline(linger=self._transport_buffered == 0)
            if deadline is not None:
                deadlines.append(deadline)
        if (
            self._blocked_since is not None
            and timeouts.write_timeout is not None
            and self.state is not State.CLOSED
        ):
            deadlines.append(self._blocked_since + timeouts.write_timeout)
        return min(deadlines) if deadlines else None

    @property
    def flush_deadline(self) -> float | None:
        """Once ``finished``: when a transport still holding bytes must be aborted.

        The close timeout after the close (the last words get that long to leave), or the
        close itself when the peer had stopped reading; None before the close, or when
        both timeouts are disabled."""
        if self._closed_at is None or self.state is not State.CLOSED:
            return None
        if self._drop:
            return self._closed_at
        timeouts = self.config.timeouts
        grace = timeouts.close_timeout
        if grace is None:
            grace = timeouts.write_timeout
        return None if grace is None else self._closed_at + grace

    def handle_timer(self, now: float) -> None:
        self._clock = now
        timeouts = self.config.timeouts
        if (
            self._blocked_since is not None
            and timeouts.write_timeout is not None
            and self.state is not State.CLOSED
            and now >= self._blocked_since + timeouts.write_timeout
        ):
            # The peer took none of our bytes for the write timeout: it stopped reading. A
            # close frame or a final event could not reach it either, so drop it now.
            self._drop = True
            code = CloseCode.ABNORMAL_CLOSURE if self._ws is not None else None
            self._set_closed(code, "the peer stopped reading")
            return
        if self.state is State.AWAITING_REQUEST:
            self._request_timer(now)
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
    def quiet(self) -> bool:
        """Streaming (a WebSocket or a response body) with no event waiting: until new input,
        a timer or a call of the application, ``next_event()`` has nothing to hand out.

        A pump that has just written ``data_to_send`` outside its step may then leave that
        step out. (While a request is answered a pipelined one may wait: never quiet.)"""
        return (
            self.state in (State.WEBSOCKET, State.STREAMING)
            and not self._eof  # buffered until next_event() turns it into a close
            and not self._events
            and not self._scheduler.has_events
        )

    @property
    def finished(self) -> bool:
        """True once the transport should be closed (after writing ``data_to_send``)."""
        return self.state is State.CLOSED

    @property
    def wants_data(self) -> bool:
        """False while the peer's unread bytes are at their bound: stop reading for now."""
        return self.state is not State.CLOSED and self._inbound_below_bound()

    def close(self, now: float, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close now. A WebSocket gets a close frame (queued data is dropped); otherwise the
        transport is closed after ``data_to_send``."""
        if self.state is State.CLOSED:
            return
        self._clock = now
        if self.state is State.WEBSOCKET:
            self._start_close(code, reason, now)
        elif self.state is State.STREAMING and self._sse and code == CloseCode.GOING_AWAY:
            self._end_sse_going_away(reason or "the server is going away")
        elif self.state is not State.CLOSING:
            self._set_closed(None, reason or "closed by the application")

    def _end_sse_going_away(self, reason: str) -> None:
        """Shutdown of an SSE response: an ``error`` event (``going_away``, no stream) after
        whatever already left, then the body's last chunk, so the client can tell a shutdown
        from a broken connection and reconnect later (WebSocket's 1001). What is still queued
        is dropped (reported in ``unsent``)."""
        error = encode_message(StreamError(None, ErrorCode.GOING_AWAY, reason))
        self._write_body(SseEvent(data=error, event="error").encode())
        self._h11_send(h11.EndOfMessage())  # STREAMING: h11 is always in the body here
        self._set_closed(None, reason)

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

    def _abort(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return  # a verdict on a stream the close already dropped
        if self.state is State.WEBSOCKET:
            self._start_close(code, reason, self._keepalive.last_received)
        else:  # SSE or a streamed body: closing the transport is the only signal there is
            self._set_closed(None, reason)
