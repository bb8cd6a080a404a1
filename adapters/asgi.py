"""ASGI embedding: diaproto streams over an ASGI server's own WebSocket and SSE.

Inside FastAPI, Starlette or any ASGI application served by uvicorn or hypercorn. The ASGI
server does the framing (HTTP, WebSocket frames, ping/pong, TCP); diaproto's
:class:`~diaproto.server.MessageConnection` decides everything else: what leaves next
(priority, fair shares, batching), credit, cancel, backpressure, the write timeout. This
module only moves whole messages between the two and runs the application's producers::

    async def speak(request: StreamRequest) -> AsyncIterator[bytes]:
        async for chunk in my_model(request.text):
            yield chunk

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await serve_websocket(websocket.scope, websocket.receive, websocket.send, handler=speak)

    @app.get("/sse")
    async def sse(text: str) -> EventStreamResponse:
        return EventStreamResponse(my_model(text))

Per connection, on anyio (asyncio or trio): a reader task feeds ``receive`` into the core,
one writer loop awaits ``send`` for each message the core hands out (while a ``send`` has not
returned its size counts as in flight, so everything else waits in the scheduler, where a
control message still overtakes data), and one task per stream iterates the producer, held
while the core says the stream is paused. A cancel, a disconnect or the end of the
connection cancels the producer's task and closes its async generator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from diaproto import CancelStream, ErrorCode, OpenStream, ResumeStream
from diaproto.adapters._pump import now
from diaproto.config import ConnectionConfig
from diaproto.errors import CloseCode
from diaproto.events import ConnectionClosed, Event, StreamResumed
from diaproto.server.messages import MessageConnection, choose_subprotocol

try:  # Starlette is optional: without it there is no EventStreamResponse
    from starlette.responses import Response as _StarletteResponse
except ImportError:  # pragma: no cover
    _StarletteResponse = object  # type: ignore[assignment,misc]

__all__ = [
    "EventStreamResponse",
    "Refused",
    "StreamRequest",
    "serve_event_stream",
    "serve_websocket",
    "websocket_app",
]

log = logging.getLogger("diaproto.adapters.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The stream id of an SSE response's one stream (its ``end`` event names it).
SSE_STREAM_ID = 1


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A client's ``open`` on the WebSocket: what to produce for the new stream."""

    stream_id: int
    text: str
    voice: str | None
    options: Mapping[str, Any]
    credit: int | None
    scope: Scope = field(repr=False)  # the connection's ASGI scope (path, headers, client)


#: Makes the data of one stream: called once per ``open``; closed when the stream is over.
Handler = Callable[[StreamRequest], AsyncIterable[bytes]]


class Refused(Exception):
    """Raise it from a producer (before or between chunks) to end its stream with ``error``
    ``code`` (default ``invalid_request``) instead of ``end``; the connection goes on."""

    def __init__(self, message: str, code: str = ErrorCode.INVALID_REQUEST) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(eq=False, slots=True)
class _Producer:
    stream_id: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    paused: bool = False
    resumed: anyio.Event = field(default_factory=anyio.Event)


class _Channel:
    """One ASGI connection: the writer loop, the reader, and a task per stream."""

    def __init__(
        self, conn: MessageConnection, send: Send, tasks: anyio.abc.TaskGroup, *, sse: bool
    ) -> None:
        self.conn = conn
        self._send = send
        self._tasks = tasks
        self._sse = sse
        self._wake = anyio.Event()
        self._producers: dict[int, _Producer] = {}
        self.handler: Handler | None = None
        self.scope: Scope = {}

    # --- events ----------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Act on every pending event of the core; each wakes the writer."""
        conn = self.conn
        while (event := conn.next_event()) is not None:
            try:
                self._handle(event)
            except Exception:
                log.exception("failed on %s", type(event).__name__)
                conn.close(now(), CloseCode.INTERNAL_ERROR, "internal error")
            self._wake.set()

    def _handle(self, event: Event) -> None:
        if isinstance(event, OpenStream):
            self._open(event)
        elif isinstance(event, CancelStream):
            self._stop(event.stream_id)
        elif isinstance(event, ResumeStream):
            if not self._taken(event.stream_id):
                message = "this server keeps no streams to resume"
                self.conn.fail_stream(event.stream_id, ErrorCode.UNKNOWN_STREAM, message, now())
        elif isinstance(event, StreamResumed):  # (a producer sees its pause at its send)
            producer = self._producers.get(event.stream_id)
            if producer is not None:
                producer.paused = False
                producer.resumed.set()
        elif isinstance(event, ConnectionClosed):
            for stream_id in list(self._producers):
                self._stop(stream_id)

    def _taken(self, stream_id: int) -> bool:
        """The id is in use: refused with ``stream_exists`` (the open stream is left alone)."""
        if stream_id not in self._producers and not self.conn.scheduler.has_stream(stream_id):
            return False
        message = f"stream {stream_id} is already open"
        self.conn.fail_stream(None, ErrorCode.STREAM_EXISTS, message, now())
        return True

    def _open(self, event: OpenStream) -> None:
        if self._taken(event.stream_id):
            return
        assert self.handler is not None
        request = StreamRequest(
            event.stream_id, event.text, event.voice, event.options, event.credit, self.scope
        )
        self.conn.open_stream(event.stream_id, now(), credit=event.credit)
        self.start(event.stream_id, self.handler(request))

    def start(self, stream_id: int, chunks: AsyncIterable[bytes]) -> None:
        producer = _Producer(stream_id)
        self._producers[stream_id] = producer
        self._tasks.start_soon(self._produce, producer, chunks)

    def _stop(self, stream_id: int) -> None:
        producer = self._producers.pop(stream_id, None)
        if producer is not None:
            producer.scope.cancel()
            producer.resumed.set()

    # --- producers -------------------------------------------------------------------------

    async def _produce(self, producer: _Producer, chunks: AsyncIterable[bytes]) -> None:
        conn, stream_id = self.conn, producer.stream_id
        with producer.scope:
            iterator = aiter(chunks)
            try:
                async for chunk in iterator:
                    while producer.paused:
                        await producer.resumed.wait()
                    conn.send(stream_id, chunk, now())
                    self._wake.set()
                    if conn.scheduler.is_paused(stream_id) and not producer.paused:
                        # Held at once, not when the writer next hands out StreamPaused: a
                        # producer that never waits must not run past the budget meanwhile.
                        producer.paused = True
                        producer.resumed = anyio.Event()
                    await anyio.lowlevel.checkpoint()  # the writer's turn
            except Refused as refusal:
                conn.fail_stream(stream_id, refusal.code, refusal.message, now())
            except Exception:
                log.exception("the producer of stream %d failed", stream_id)
                message = "the stream's producer failed"
                conn.fail_stream(stream_id, ErrorCode.INTERNAL, message, now())
            else:
                conn.end_stream(stream_id, now())
            finally:
                await _close(iterator)
            if self._sse:
                conn.end_response(now())
        if self._producers.get(stream_id) is producer:
            del self._producers[stream_id]
        self._wake.set()

    # --- reading ---------------------------------------------------------------------------

    async def read(self, receive: Receive) -> None:
        """Feed the client's messages to the core until the connection is over."""
        conn = self.conn
        while not conn.finished:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text: str | None = message.get("text")
                data: bytes | str = (message.get("bytes") or b"") if text is None else text
                conn.receive_message(data, now())
            elif kind in ("websocket.disconnect", "http.disconnect"):
                conn.receive_close(now(), message.get("code"))
            self.dispatch()
            self._wake.set()

    # --- writing ---------------------------------------------------------------------------

    async def write(self, event: Callable[[bytes | str], Message]) -> None:
        """Send what the core hands out, as ``event`` makes each an ASGI message, until the
        connection is finished; then say goodbye if the core says so."""
        conn = self.conn
        while True:
            self._wake = anyio.Event()  # (set by anything that happens from here on)
            self.dispatch()
            messages = conn.messages_to_send(now())
            for message in messages:
                if not await self._deliver(event(message), len(message)):
                    return
            self.dispatch()  # what the take changed (a stream resumed) is acted on first
            if conn.finished:
                if conn.graceful:
                    await self._farewell()
                return
            if not messages and not self._wake.is_set():
                await self._wait()

    async def _deliver(self, message: Message, size: int) -> bool:
        """One ``send``, its size in flight until it returns; False when the connection is
        over (the client left, or took nothing for the write timeout)."""
        conn = self.conn
        conn.set_transport_buffered(size, now())
        deadline = conn.write_deadline
        delay = math.inf if deadline is None else deadline - now()
        try:
            with anyio.move_on_after(delay) as waited:
                await self._send(message)
        except Exception as exc:  # the server's way of saying the client is gone
            log.debug("send failed: %r", exc)
            conn.receive_close(now())
            self.dispatch()
            return False
        if waited.cancelled_caught:
            assert deadline is not None
            conn.handle_timer(max(now(), deadline))
            self.dispatch()
            return False
        conn.set_transport_buffered(0, now())
        return True

    async def _wait(self) -> None:
        """Until a wake-up (input, a producer's chunk) or the core's next deadline."""
        deadline = self.conn.next_deadline()
        delay = math.inf if deadline is None else deadline - now()
        if delay > 0:
            with anyio.move_on_after(delay):
                await self._wake.wait()
        else:
            await anyio.lowlevel.checkpoint()
        if deadline is not None and now() >= deadline:
            self.conn.handle_timer(now())

    async def _farewell(self) -> None:
        if self._sse:
            message: Message = {"type": "http.response.body", "body": b"", "more_body": False}
        else:
            message = {"type": "websocket.close", "code": self.conn.close_code}
        try:
            await self._send(message)
        except Exception as exc:
            log.debug("the farewell was not sent: %r", exc)


async def _close(iterator: object) -> None:
    """Close an async generator (its ``finally`` runs, even while we are being cancelled)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


def _websocket_message(message: bytes | str) -> Message:
    if isinstance(message, str):
        return {"type": "websocket.send", "text": message}
    return {"type": "websocket.send", "bytes": message}


def _body_message(message: bytes | str) -> Message:
    body = message.encode() if isinstance(message, str) else message
    return {"type": "http.response.body", "body": body, "more_body": True}


async def _run(
    channel: _Channel, receive: Receive, event: Callable[[bytes | str], Message]
) -> None:
    tasks = channel._tasks
    tasks.start_soon(channel.read, receive)
    try:
        await channel.write(event)
    finally:
        tasks.cancel_scope.cancel()


async def serve_websocket(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    handler: Handler,
    config: ConnectionConfig | None = None,
) -> None:
    """Serve one ASGI WebSocket (a ``websocket`` scope, not yet accepted) in diaproto.v1.

    A client that does not offer the ``diaproto.v1`` subprotocol is refused (the server then
    answers the handshake with 403). Each ``open`` calls ``handler`` for the stream's data.
    Returns when the connection is over.
    """
    if scope["type"] != "websocket":
        raise ValueError(f"serve_websocket needs a websocket scope, not {scope['type']!r}")
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left before the handshake
    subprotocol = choose_subprotocol(scope.get("subprotocols") or ())
    if subprotocol is None:
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
        return
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    conn = MessageConnection(now(), config)
    async with anyio.create_task_group() as tasks:
        channel = _Channel(conn, send, tasks, sse=False)
        channel.handler = handler
        channel.scope = scope
        await _run(channel, receive, _websocket_message)


async def serve_event_stream(
    scope: Scope,
    receive: Receive,
    send: Send,
    chunks: AsyncIterable[bytes],
    *,
    config: ConnectionConfig | None = None,
    id_prefix: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer one ASGI HTTP request with ``chunks`` as an SSE stream (diaproto's SSE
    mapping: a ``data`` event per chunk, then ``end``; ``error`` if the producer fails).

    ``headers`` are added to the response's (raw ASGI pairs). Returns when the response is
    over; a client that goes away cancels the producer."""
    conn = MessageConnection(now(), config, sse=True, id_prefix=id_prefix)
    start: list[tuple[bytes, bytes]] = [(k.encode(), v.encode()) for k, v in conn.response_headers]
    start.extend(headers or ())
    await send({"type": "http.response.start", "status": 200, "headers": start})
    conn.open_stream(SSE_STREAM_ID, now())
    async with anyio.create_task_group() as tasks:
        channel = _Channel(conn, send, tasks, sse=True)
        channel.start(SSE_STREAM_ID, chunks)
        await _run(channel, receive, _body_message)


def websocket_app(handler: Handler, *, config: ConnectionConfig | None = None) -> ASGIApp:
    """A raw ASGI application serving diaproto.v1 WebSockets (mount it anywhere); a plain
    HTTP request gets 426 Upgrade Required."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await serve_websocket(scope, receive, send, handler=handler, config=config)
        elif scope["type"] == "http":
            headers = [(b"content-type", b"text/plain"), (b"upgrade", b"websocket")]
            await send({"type": "http.response.start", "status": 426, "headers": headers})
            body = b"diaproto.v1 is spoken over WebSocket here\n"
            await send({"type": "http.response.body", "body": body})

    return app


class EventStreamResponse(_StarletteResponse):
    """A Starlette (FastAPI) response that streams ``chunks`` as diaproto SSE events:
    return it from an endpoint. Headers set on it (cookies, dependencies' headers) are kept;
    a background task runs after the response."""

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        *,
        config: ConnectionConfig | None = None,
        id_prefix: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(headers=headers)
        self.chunks = chunks
        self.config = config
        self.id_prefix = id_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        own = {b"content-type", b"content-length", b"cache-control"}
        extra = [(k, v) for k, v in self.raw_headers if k not in own]
        await serve_event_stream(
            scope,
            receive,
            send,
            self.chunks,
            config=self.config,
            id_prefix=self.id_prefix,
            headers=extra,
        )
        if self.background is not None:
            await self.background()
