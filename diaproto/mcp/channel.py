"""Scheduling MCP messages by kind on one connection (a WebSocket or an SSE response).

Four scheduler streams per connection, so a slow client costs only itself:

- **control** (CONTROL class): responses, errors, pings, cancellations. Never waits behind
  bulk data, never dropped.
- **progress** (INTERACTIVE, LATEST): one queued report per progress token; a newer value
  replaces an unsent older one. A report still queued when its request is answered is
  withdrawn, so nothing about a request follows its response.
- **log** (BACKGROUND, DROP_OLDEST): a lagging client loses old log lines, counted in the
  stream's metrics (``drops``), instead of holding memory.
- **bulk** (STREAM, PAUSE): streamed tool output (partial results). Lossless; the producer
  is paused through ``StreamPaused``/``StreamResumed`` for stream :data:`BULK`. A response to a
  request whose partial results are still queued follows them on this stream, so a client
  never sees a result before the output it completes.

A resumed stream (:meth:`McpChannel.replay`) sends everything it replays before anything
new: until the last replayed message has left, every message joins it on the bulk stream, in
order. Event ids are given as events leave, so otherwise a new progress report or control
message would leave (with a new id) ahead of a replayed one (with its old, smaller id): the
client would see progress go back, and a second resume from the last id it saw would repeat.

Past the connection's hard budget the client is too far behind to serve: the connection is
closed (1008 on a WebSocket) and ``send`` returns False. Nothing blocks the server.
"""

from __future__ import annotations

from diaproto.errors import CloseCode, LocalProtocolError
from diaproto.mcp.jsonrpc import RequestId
from diaproto.mcp.outbox import Outbound
from diaproto.mcp.protocol import Kind
from diaproto.scheduler import Policy, Priority
from diaproto.server import ServerConnection
from diaproto.sse import SseEvent

CONTROL, PROGRESS, LOG, BULK = 1, 2, 3, 4
LOG_LIMIT = 64 * 1024  # log lines a client may lag by before the oldest are dropped
BULK_LIMIT = 256 * 1024  # streamed output queued per connection before its producer pauses


class McpChannel:
    """Carries MCP messages on a connection that has accepted SSE or a WebSocket."""

    def __init__(self, conn: ServerConnection, now: float, *, sse: bool) -> None:
        """``sse``: the connection answered with ``accept_sse`` (messages become ``message``
        events; give a resumable stream its ids with ``accept_sse(stamp=...)``)."""
        self.conn = conn
        self.sse = sse
        budget = conn.config.scheduler.max_buffered
        conn.open_stream(CONTROL, now, priority=Priority.CONTROL, limit=budget)
        conn.open_stream(PROGRESS, now, priority=Priority.INTERACTIVE, policy=Policy.LATEST)
        conn.open_stream(
            LOG, now, priority=Priority.BACKGROUND, policy=Policy.DROP_OLDEST, limit=LOG_LIMIT
        )
        conn.open_stream(BULK, now, priority=Priority.STREAM, limit=BULK_LIMIT)
        self._streaming: set[RequestId] = set()  # requests with partial results sent
        # The bulk stream's sequence number of the last replayed message: bulk is lossless,
        # in order and opened here, so its n-th message has left once n messages have.
        self._replayed_through = 0
        self.closed = False

    def send(self, message: Outbound, now: float) -> bool:
        """Queue one message on the stream its kind calls for; False if the client is gone."""
        if self.closed:
            return False
        stream = _STREAM_OF[message.kind]
        related = message.related
        key = message.progress_token
        if self.replaying:
            stream, key = BULK, None  # behind the replay, in order (never coalesced)
        if message.kind is Kind.PARTIAL and related is not None:
            self._streaming.add(related)
        elif message.final and related in self._streaming:
            self._streaming.discard(related)
            if self.conn.scheduler.queued_bytes(BULK):
                stream = BULK  # after the output it completes
        if message.final and message.progress_token is not None:
            self.conn.scheduler.withdraw(PROGRESS, message.progress_token)
        payload: str | SseEvent = (
            SseEvent(data=message.text, event="message") if self.sse else message.text
        )
        try:
            self.conn.send(stream, payload, now, key=key)
        except LocalProtocolError:
            # Past the hard budget: this client stopped reading long ago.
            self.closed = True
            self.conn.close(now, CloseCode.POLICY_VIOLATION, "the client is too far behind")
            return False
        return True

    def replay(self, event_id: str, text: str, related: RequestId | None, now: float) -> None:
        """Re-send a recorded message under its original id (a resumed stream), in order
        with what follows: a response to ``related`` will not overtake it."""
        if related is not None:
            self._streaming.add(related)
        seq = self.conn.send(BULK, SseEvent(data=text, event="message", id=event_id), now)
        assert seq is not None  # a PAUSE stream never drops
        self._replayed_through = seq

    @property
    def replaying(self) -> bool:
        """True while a replayed message is still queued: anything new waits behind it."""
        scheduler = self.conn.scheduler
        return (
            self._replayed_through > 0
            and scheduler.has_stream(BULK)  # (gone with the connection)
            and self._replayed_through > scheduler.metrics(BULK).messages_sent
        )

    def endpoint(self, uri: str, now: float) -> None:
        """The legacy HTTP+SSE transport's first event: where to POST messages."""
        self.conn.send(CONTROL, SseEvent(data=uri, event="endpoint"), now)

    @property
    def paused(self) -> bool:
        """True while streamed output must wait (the bulk stream is over its share)."""
        return self.conn.scheduler.is_paused(BULK)

    def finish(self, now: float) -> None:
        """End an SSE response once everything queued has been sent."""
        self.closed = True
        self.conn.end_response(now)


_STREAM_OF = {
    Kind.RESPONSE: CONTROL,
    Kind.CONTROL: CONTROL,
    Kind.PROGRESS: PROGRESS,
    Kind.LOG: LOG,
    Kind.PARTIAL: BULK,
}
