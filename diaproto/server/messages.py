"""diaproto.v1 in whole messages, for a server that does the framing itself (ASGI).

An ASGI server (uvicorn, hypercorn) owns HTTP and WebSocket framing: it takes and hands out
whole WebSocket messages and response body chunks. :class:`MessageConnection` is the rest of
:class:`~diaproto.server.ServerConnection` for such a server: the wire protocol's messages
(control messages decoded and answered, credit and cancel applied, data records batched), the
scheduler's order, backpressure, and the write timeout. No bytes on the wire, no clock::

    conn.receive_message(text_or_bytes, now)   # a whole WebSocket message from the client
    conn.receive_close(now)                    # the client is gone
    conn.next_event() -> Event | None          # wire messages, StreamPaused, ... , ConnectionClosed
    conn.messages_to_send(now) -> list         # what to send now, in the scheduler's order
    conn.set_transport_buffered(n, now)        # bytes handed to the server, not yet taken
    conn.next_deadline() / conn.handle_timer(now)

With ``sse=False`` (a WebSocket) each item of ``messages_to_send`` is one message: ``str`` a
text message, ``bytes`` a binary message of records. With ``sse=True`` each is a chunk of an
SSE response body (``response_headers`` are its headers). Once ``finished``, ``graceful``
says whether to end politely (a WebSocket close with ``close_code``, the body's last chunk)
or just stop (the client is gone, or stopped reading).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from diaproto.config import ConnectionConfig
from diaproto.errors import CloseCode, LocalProtocolError, ReplayGap
from diaproto.events import (
    ConnectionClosed,
    Event,
    Headers,
    RemoteError,
    SlowConsumer,
)
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Outgoing, Policy, Priority, Scheduler, StreamOptions
from diaproto.server.core import CONTROL_STREAM, control_stream_options
from diaproto.server.framing import Payload, payload_size, sse_framer
from diaproto.sse import SSE_RESPONSE_HEADERS, SseEvent, encode_comment, encode_retry
from diaproto.wire import (
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
    encode_records,
)

__all__ = ["MessageConnection", "choose_subprotocol"]


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """The subprotocol to accept a WebSocket with: ``diaproto.v1`` if the client offered it,
    else None (refuse the WebSocket: the client would not understand our messages)."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def frame_messages(batch: list[Outgoing[Payload]]) -> list[bytes | str]:
    """A batch as WebSocket messages: consecutive data chunks become one binary message of
    records, a text payload is a text message of its own."""
    out: list[bytes | str] = []
    records: list[tuple[int, int, bytes]] = []
    for item in batch:
        payload = item.payload
        if isinstance(payload, bytes):
            records.append((item.stream_id, item.seq, payload))
            continue
        if records:
            out.append(encode_records(records))
            records = []
        assert isinstance(payload, str)  # send() takes bytes; control and end are text
        out.append(payload)
    if records:
        out.append(encode_records(records))
    return out


class MessageConnection:
    """One WebSocket (or one SSE response) that an outer server frames; see the module."""

    __slots__ = (
        "_blocked_since",
        "_clock",
        "_ending",
        "_events",
        "_last_write",
        "_out",
        "_scheduler",
        "_sse",
        "_sse_frame",
        "_transport_buffered",
        "close_code",
        "config",
        "finished",
        "graceful",
        "unsent",
    )

    def __init__(
        self,
        now: float,
        config: ConnectionConfig | None = None,
        *,
        sse: bool = False,
        id_prefix: str = "",
    ) -> None:
        """``sse``: one SSE response instead of a WebSocket; ``id_prefix`` goes before the
        sequence number of each data event's id (see ``ServerConnection.accept_sse``)."""
        self.config = config or ConnectionConfig()
        self._sse = sse
        self._sse_frame = sse_framer(None, id_prefix)  # (refuses a bad prefix)
        self._scheduler: Scheduler[Payload] = Scheduler(self.config.scheduler)
        self._scheduler.open_stream(CONTROL_STREAM, now, control_stream_options(self.config))
        self._events: list[Event] = []
        self._out: list[bytes | str] = []
        if sse and self.config.sse_retry_ms is not None:
            self._out.append(encode_retry(self.config.sse_retry_ms))
        self._ending = False
        self._transport_buffered = 0
        self._blocked_since: float | None = None
        self._clock = now
        self._last_write = now
        #: True once nothing more is sent; ``graceful`` says how to end (see the module).
        self.finished = False
        self.graceful = False
        #: The close code to send (WebSocket, when ``graceful``).
        self.close_code: int | None = None
        #: What was queued and never sent when the connection closed.
        self.unsent: list[Payload] = []

    @property
    def response_headers(self) -> Headers:
        """The headers of an SSE response."""
        return SSE_RESPONSE_HEADERS

    @property
    def scheduler(self) -> Scheduler[Payload]:
        """The outbound scheduler (metrics, pause state, credit of each stream)."""
        return self._scheduler

    # --- inbound ---------------------------------------------------------------------------

    def receive_message(self, message: bytes | str, now: float) -> None:
        """A whole WebSocket message from the client. Never raises for what the client sent:
        a bad message is answered with ``error`` (the connection goes on), one over
        ``Limits.max_message_bytes`` closes the connection with 1009."""
        if self.finished or self._sse:
            return
        self._clock = now
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        limit = self.config.limits.max_message_bytes
        if size > limit:
            error = WireError(ErrorCode.BAD_MESSAGE, f"message larger than {limit}")
            self._events.append(RemoteError(error, fatal=True))
            self._close(CloseCode.MESSAGE_TOO_BIG, graceful=True, reason=error.message)
            return
        try:
            if isinstance(message, bytes):
                raise WireError(ErrorCode.BAD_MESSAGE, "clients send no binary messages in v1")
            decoded = decode_client_message(message)
        except WireError as exc:
            self._events.append(RemoteError(exc, fatal=False))
            self._control(encode_message(StreamError(exc.stream_id, exc.code, exc.message)))
            return
        if isinstance(decoded, GrantCredit):
            self._scheduler.grant_credit(decoded.stream_id, decoded.nbytes)
        elif isinstance(decoded, CancelStream):
            self._scheduler.discard_stream(decoded.stream_id)
        self._events.append(decoded)

    def receive_close(self, now: float, code: int | None = None) -> None:
        """The client closed the WebSocket or went away (ASGI ``*.disconnect``)."""
        if self.finished:
            return
        self._clock = now
        self._close(code, graceful=False, reason="the client went away")

    def next_event(self) -> Event | None:
        while True:
            if self._events and not isinstance(self._events[0], ConnectionClosed):
                return self._events.pop(0)
            event = self._scheduler.next_event()
            if event is None:
                return self._events.pop(0) if self._events else None
            if isinstance(event, SlowConsumer) and not self.finished:
                graceful = not self._sse  # (an SSE response can only be cut)
                self._close(CloseCode.POLICY_VIOLATION, graceful=graceful, reason="slow consumer")
            if getattr(event, "stream_id", None) != CONTROL_STREAM:
                return event

    # --- outbound --------------------------------------------------------------------------

    def messages_to_send(self, now: float) -> list[bytes | str]:
        """What leaves now, in order (empty when nothing is due)."""
        self._clock = now
        out, self._out = self._out, []
        if not self.finished:
            self._scheduler.set_in_flight(self._transport_buffered)
            batch = self._scheduler.take(now)
            if batch:
                if self._sse:
                    out.append(self._sse_frame(batch))
                else:
                    out.extend(frame_messages(batch))
            if self._ending and not self._scheduler.has_queued:
                self._close(None, graceful=True, reason="response complete")
        if out:
            self._last_write = now
        return out

    def set_transport_buffered(self, nbytes: int, now: float) -> None:
        """Bytes handed to the outer server whose ``send`` has not returned yet. They count in
        the write window and the budget, and while there are some the write timeout runs
        (restarted by each smaller report)."""
        self._clock = now
        nbytes = max(nbytes, 0)
        if nbytes == 0:
            self._blocked_since = None
        elif self._blocked_since is None or nbytes < self._transport_buffered:
            self._blocked_since = now
        self._transport_buffered = nbytes
        if not self.finished:
            self._scheduler.set_in_flight(nbytes)

    @property
    def write_deadline(self) -> float | None:
        """When a ``send`` that has not returned means the client stopped reading."""
        timeout = self.config.timeouts.write_timeout
        if self._blocked_since is None or timeout is None or self.finished:
            return None
        return self._blocked_since + timeout

    def _heartbeat_deadline(self) -> float | None:
        interval = self.config.timeouts.sse_heartbeat
        if not self._sse or interval is None or self.finished:
            return None
        return self._last_write + interval

    def next_deadline(self) -> float | None:
        deadlines = [self.write_deadline, self._heartbeat_deadline()]
        if not self.finished:
            deadlines.append(self._scheduler.next_deadline(linger=self._transport_buffered == 0))
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        self._clock = now
        write_deadline = self.write_deadline
        if write_deadline is not None and now >= write_deadline:
            # The client took nothing for the write timeout: nothing more could reach it.
            code = None if self._sse else CloseCode.ABNORMAL_CLOSURE
            self._close(code, graceful=False, reason="the peer stopped reading")
            return
        if self.finished:
            return
        self._scheduler.handle_timer(now)
        heartbeat = self._heartbeat_deadline()
        if heartbeat is not None and now >= heartbeat:
            if self._transport_buffered == 0 and not self._out:
                self._out.append(encode_comment())
            self._last_write = now

    def close(self, now: float, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close now: a WebSocket with ``code`` (what is queued is dropped); an SSE response
        with 1001 gets the ``going_away`` error event first, otherwise it is cut."""
        if self.finished:
            return
        self._clock = now
        if not self._sse:
            self._close(code, graceful=True, reason=reason or "closed by the application")
        elif code == CloseCode.GOING_AWAY:
            reason = reason or "the server is going away"
            error = encode_message(StreamError(None, ErrorCode.GOING_AWAY, reason))
            self._out.append(SseEvent(data=error, event="error").encode())
            self._close(None, graceful=True, reason=reason)
        else:
            self._close(None, graceful=False, reason=reason or "closed by the application")

    def _close(self, code: int | None, *, graceful: bool, reason: str) -> None:
        self.finished = True
        self.graceful = graceful
        self.close_code = code if graceful else None
        self.unsent = [item.payload for item in self._scheduler.queued_items()]
        for stream_id in self._scheduler.stream_ids:
            self._scheduler.discard_stream(stream_id)  # each reports StreamFinished
        self._events.append(ConnectionClosed(code, reason))

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
        pace: float | None = None,
        lead: int | None = None,
        burst: int | None = None,
        grace: float = 5.0,
        replay: ReplayBuffer[Payload] | None = None,
        record: bool = True,
        token: str | None = None,
    ) -> None:
        """As ``ServerConnection.open_stream``: a WebSocket also sends ``open`` (with ``token``)."""
        self._expect_open()
        if not 0 <= stream_id <= 0xFFFFFFFF:
            raise LocalProtocolError("stream ids are integers in 0..2**32-1")
        options = StreamOptions(
            priority=priority,
            policy=policy,
            limit=limit,
            credit=credit,
            pace=pace,
            lead=lead,
            burst=burst,
            grace=grace,
            replay=replay,
            record=record,
        )
        self._scheduler.open_stream(stream_id, now, options)
        if not self._sse:
            self._control(encode_message(StreamOpened(stream_id, token)))

    def send(
        self, stream_id: int, payload: bytes, now: float, *, key: Hashable | None = None
    ) -> int | None:
        """Queue one data chunk; returns its sequence number (None: dropped by its policy)."""
        self._expect_open()
        if not isinstance(payload, bytes):
            raise LocalProtocolError("with diaproto.v1, send() takes data chunks (bytes)")
        return self._scheduler.enqueue(stream_id, payload, len(payload), now, key=key)

    def end_stream(self, stream_id: int, now: float) -> None:
        """No more data on the stream; ``end`` follows what it has queued."""
        self._expect_open()
        text = encode_message(StreamEnd(stream_id, self._scheduler.last_seq(stream_id)))
        payload: Payload = SseEvent(data=text, event="end") if self._sse else text
        self._scheduler.enqueue(stream_id, payload, payload_size(payload), now)
        self._scheduler.finish_stream(stream_id)

    def fail_stream(self, stream_id: int | None, code: str, message: str, now: float) -> None:
        """Drop what the stream still has queued and report ``error`` ahead of other data."""
        self._expect_open()
        if stream_id is not None:
            self._scheduler.discard_stream(stream_id)
        self._control(encode_message(StreamError(stream_id, code, message)))

    def resume_stream(self, stream_id: int, after: int, now: float) -> bool:
        """Re-send what the client missed after ``after``; on a replay gap the stream fails
        with ``replay_gap`` and this returns False."""
        self._expect_open()
        try:
            self._scheduler.resume(stream_id, after, now)
        except ReplayGap as gap:
            self.fail_stream(stream_id, ErrorCode.REPLAY_GAP, str(gap), now)
            return False
        return True

    def end_response(self, now: float) -> None:
        """SSE: end the response once everything queued has left."""
        self._expect_open()
        if not self._sse:
            raise LocalProtocolError("end_response is for an SSE response")
        self._clock = now
        for stream_id in self._scheduler.stream_ids:
            self._scheduler.finish_stream(stream_id)
        self._ending = True

    def _expect_open(self) -> None:
        if self.finished:
            raise LocalProtocolError("the connection is closed")
        if self._ending:
            raise LocalProtocolError("the response is ending")

    def _control(self, text: str) -> None:
        payload: Payload = SseEvent(data=text, event="error") if self._sse else text
        self._scheduler.enqueue(CONTROL_STREAM, payload, payload_size(payload), self._clock)
