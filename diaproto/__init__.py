"""diaproto: low-latency streaming of model output over WebSocket and SSE.

The core is sans-IO: connection objects take bytes and the time, and hand back events and
bytes. Runtime adapters (``diaproto.adapters.<runtime>``) run the same small pump loop
around them. ``import diaproto`` needs only ``h11`` and ``wsproto``.
"""

from __future__ import annotations

from diaproto.client import ClientState, SseClientConnection, WebSocketClientConnection
from diaproto.config import ConnectionConfig, Limits, SchedulerConfig, Timeouts
from diaproto.errors import (
    CloseCode,
    DiaprotoError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    ReplayGap,
)
from diaproto.events import (
    ConnectionClosed,
    Event,
    Rejected,
    RemoteError,
    Request,
    SlowConsumer,
    SseMessage,
    SseRequest,
    SseResponseStarted,
    StreamFinished,
    StreamPaused,
    StreamResumed,
    WebSocketAccepted,
    WebSocketMessage,
    WebSocketRequest,
)
from diaproto.metrics import StreamMetrics
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Outgoing, Policy, Priority, Scheduler, StreamOptions
from diaproto.server import ServerConnection, State
from diaproto.sse import SseEvent, SseParser
from diaproto.wire import (
    SUBPROTOCOL,
    CancelStream,
    DataChunk,
    ErrorCode,
    GrantCredit,
    OpenStream,
    ResumeStream,
    StreamEnd,
    StreamError,
    StreamOpened,
    WireError,
)

__version__ = "0.1.0"

__all__ = [
    "SUBPROTOCOL",
    "CancelStream",
    "ClientState",
    "CloseCode",
    "ConnectionClosed",
    "ConnectionConfig",
    "DataChunk",
    "DiaprotoError",
    "ErrorCode",
    "Event",
    "GrantCredit",
    "Limits",
    "LocalProtocolError",
    "OpenStream",
    "Outgoing",
    "Policy",
    "Priority",
    "ProtocolError",
    "Rejected",
    "RemoteError",
    "RemoteProtocolError",
    "ReplayBuffer",
    "ReplayGap",
    "Request",
    "ResumeStream",
    "Scheduler",
    "SchedulerConfig",
    "ServerConnection",
    "SlowConsumer",
    "SseClientConnection",
    "SseEvent",
    "SseMessage",
    "SseParser",
    "SseRequest",
    "SseResponseStarted",
    "State",
    "StreamEnd",
    "StreamError",
    "StreamFinished",
    "StreamMetrics",
    "StreamOpened",
    "StreamOptions",
    "StreamPaused",
    "StreamResumed",
    "Timeouts",
    "WebSocketAccepted",
    "WebSocketClientConnection",
    "WebSocketMessage",
    "WebSocketRequest",
    "WireError",
]
