"""Events handed out by ``next_event()``: frozen, slotted dataclasses, one fact each."""

from __future__ import annotations

from dataclasses import dataclass, field

from diaproto.errors import RemoteProtocolError
from diaproto.metrics import StreamMetrics

Headers = tuple[tuple[str, str], ...]


class Event:
    """Base class of every event the core emits."""

    __slots__ = ()


# --- HTTP front (server side) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request(Event):
    """A complete HTTP request (body read, within limits) for the application to answer."""

    method: str
    target: str
    headers: Headers
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


@dataclass(frozen=True, slots=True)
class SseRequest(Event):
    """A request whose ``Accept`` asks for ``text/event-stream``; answer with ``accept_sse``."""

    method: str
    target: str
    headers: Headers
    body: bytes = b""
    last_event_id: str | None = None

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


@dataclass(frozen=True, slots=True)
class WebSocketRequest(Event):
    """A WebSocket upgrade; answer with ``accept_websocket`` or ``reject``."""

    target: str
    headers: Headers
    subprotocols: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


# --- WebSocket (both sides) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebSocketAccepted(Event):
    """Client side: the server accepted the upgrade."""

    subprotocol: str | None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Rejected(Event):
    """Client side: the server answered the upgrade or SSE request with a non-success status."""

    status: int
    headers: Headers = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class WebSocketMessage(Event):
    """A whole WebSocket message: ``str`` for a text message, ``bytes`` for binary."""

    data: bytes | str


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The conversation is over. ``code`` is the WebSocket close code where there is one."""

    code: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RemoteError(Event):
    """The peer broke the protocol or a limit; ``error`` carries the hint we answered with.

    ``fatal`` says whether the connection is being closed because of it.
    """

    error: RemoteProtocolError
    fatal: bool = True


# --- SSE (client side) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseResponseStarted(Event):
    """Client side: the server answered the SSE request with 200 and ``text/event-stream``."""

    status: int
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class SseMessage(Event):
    """One dispatched SSE event, as the WHATWG parsing rules define it."""

    data: str
    event: str = "message"
    id: str | None = None  # the last event id in force when this event was dispatched
    retry: int | None = None  # a ``retry:`` value seen in this event's block


# --- Scheduler (server side) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamPaused(Event):
    """A PAUSE stream is over its share: stop producing until :class:`StreamResumed`."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamResumed(Event):
    """A paused stream may produce again."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class SlowConsumer(Event):
    """A DISCONNECT stream stayed over its share past its grace period; we are closing."""

    stream_id: int
    queued_bytes: int


@dataclass(frozen=True, slots=True)
class StreamFinished(Event):
    """A stream's last message left the scheduler (or it was discarded); its final counters."""

    stream_id: int
    metrics: StreamMetrics = field(compare=False)


def _header(headers: Headers, name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key == wanted:
            return value
    return None
