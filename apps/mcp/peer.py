"""One MCP client as the service sees it: its session, its calls, and where messages go.

A message leaves on the route of the request it is about (a Streamable HTTP POST stream),
else on the peer's standing route (the WebSocket, the legacy SSE stream, the GET stream).
With no live route, a resumable message of a Streamable HTTP stream is kept in the event
store for the client's resume; anything else is dropped (progress and logs are superseded
or droppable by design).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from diaproto.mcp import (
    CallCancelled,
    EventStore,
    McpSession,
    Outbound,
    RequestId,
    ToolCall,
)
from diaproto.mcp.events import (
    ClientReply,
    CompletionRequest,
    PromptGet,
    ResourceRead,
    TaskRequest,
)
from diaproto.runtime import Runtime, Session

if TYPE_CHECKING:
    from diaproto.apps.mcp.routes import Route
    from diaproto.apps.mcp.service import McpService
    from diaproto.apps.mcp.speak import SpeakCall

log = logging.getLogger("diaproto.mcp")

#: What runs when the client answers a request of ours (:meth:`McpPeer.ask`).
ReplyHandler = Callable[[ClientReply, float], None]


class Transport(Enum):
    WEBSOCKET = "websocket"
    LEGACY_SSE = "sse"
    STREAMABLE = "streamable"  # 2025-11-25 and earlier: sessions, resumable streams
    MODERN = "modern"  # 2026-07-28: one request per peer, its stream is its lifetime
    STDIO = "stdio"  # one session for the life of the process (diaproto mcp --stdio)


@dataclass(eq=False)
class McpPeer:
    service: McpService
    session: McpSession
    runtime: Runtime
    transport: Transport
    store: EventStore | None = None
    session_id: str | None = None
    owner: str = ""  # the client's host: per-peer limits count in it
    calls: dict[RequestId, SpeakCall] = field(default_factory=dict)
    standing: Route | None = None
    routes: dict[RequestId, Route] = field(default_factory=dict)
    json_waiting: dict[RequestId, Session] = field(default_factory=dict)
    streams: dict[str, RequestId | None] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    replies: dict[RequestId, ReplyHandler] = field(default_factory=dict)
    # What the shared session store holds of it (``serve --cluster``), and since when.
    saved_state: str = ""
    saved_at: float = float("-inf")
    _stream_count: int = 0

    # --- what a SpeakCall needs ---------------------------------------------------------------

    def wake(self) -> None:
        for route in self.live_routes():
            route.conn.wake()
        for conn in self.json_waiting.values():
            conn.wake()

    def keep_audio(self, wav: bytes) -> str:
        return self.service.keep_audio(wav)

    def live_routes(self) -> list[Route]:
        routes = list(self.routes.values())
        if self.standing is not None:
            routes.append(self.standing)
        return routes

    @property
    def busy(self) -> bool:
        """In use: a stream or a request open (such a session does not expire). A call whose
        client dropped its stream does not count: it waits, held, for a resume."""
        return bool(self.routes or self.standing or self.json_waiting)

    # --- the pump ------------------------------------------------------------------------------

    def pump(self, now: float) -> None:
        """Act on what the session decided: start and stop calls, send its messages."""
        while (event := self.session.next_event()) is not None:
            if isinstance(event, ToolCall):
                self.service.start_call(self, event, now)
            elif isinstance(event, CallCancelled):
                self._cancelled(event.request_id, now)
            elif isinstance(event, ResourceRead | PromptGet | CompletionRequest | TaskRequest):
                self.service.catalog.handle(self, event, now)
            elif isinstance(event, ClientReply):
                handler = self.replies.pop(event.request_id, None)
                if handler is not None:
                    handler(event, now)
        while (message := self.session.next_outbound()) is not None:
            self._send(message, now)
        self.wake()

    def ask(
        self,
        method: str,
        params: dict[str, Any],
        related: RequestId | None,
        on_reply: ReplyHandler,
        now: float,
    ) -> bool:
        """Send the client a request (sampling, elicitation, roots) on ``related``'s stream;
        ``on_reply`` runs with its answer. False when the client cannot be asked (see
        :meth:`McpSession.request`): nothing was sent and ``on_reply`` will not run."""
        request_id = self.session.request(method, params, related)
        if request_id is None:
            return False
        self.replies[request_id] = on_reply
        self.pump(now)
        return True

    def close_stream(self, request_id: RequestId, now: float) -> bool:
        """Close the stream carrying a call (Streamable HTTP at 2025-11-25, SEP-1699
        polling): the call goes on, the client resumes with ``Last-Event-ID`` after the
        ``retry`` delay and gets what it missed. False for any other transport."""
        route = self.routes.get(request_id)
        if route is None or self.transport is not Transport.STREAMABLE:
            return False
        # The response ends cleanly once what is queued (the priming event's id at least)
        # has left; what the call sends from now on waits in the event store.
        del self.routes[request_id]
        self.service.forget_route(route)
        route.channel.finish(now)
        route.conn.wake()
        return True

    def new_stream(self, request_id: RequestId | None) -> str:
        self._stream_count += 1
        name = f"{'g' if request_id is None else 'r'}{self._stream_count}"
        self.streams[name] = request_id
        return name

    def _send(self, message: Outbound, now: float) -> None:
        related = message.related
        route: Route | None
        conn = self.json_waiting.pop(related, None) if related is not None else None
        if conn is not None and related is not None:
            if message.final:
                # 2026-07-28: an error answered directly carries its code's HTTP status.
                code = message.error_code if self.transport is Transport.MODERN else None
                self.service.respond_json(conn, message.text, now, error_code=code)
                return
            route = self.service.open_post_stream(self, conn, related, now)
        else:
            route = self.routes.get(related) if related is not None else None
        if route is None and (related is None or related not in self.streams.values()):
            route = self.standing
        if route is not None and route.backlog and route.stream is not None and self.store:
            # Behind a replay still under way: recorded now, sent in its turn.
            route.backlog.append((self.store.store(route.stream, message.text), message.text))
            if message.final:
                self.finished.add(route.stream)
            return
        if route is not None:
            route.channel.send(message, now)
            if message.final and route.request_id is not None:
                self._finish_route(route, now)
            return
        stream = self._stream_of(related)
        if stream is not None and self.store is not None:
            self.store.store(stream, message.text)  # the client's resume will replay it
            if message.final:
                self.finished.add(stream)
        else:
            log.debug("dropped a %s message: no route to the client", message.kind.value)

    def _stream_of(self, related: RequestId | None) -> str | None:
        for name, request_id in self.streams.items():
            if request_id == related and related is not None:
                return name
        return None

    def _finish_route(self, route: Route, now: float) -> None:
        if route.stream is not None:
            self.finished.add(route.stream)
        self.routes.pop(route.request_id, None)  # type: ignore[arg-type]
        self.service.forget_route(route)
        route.channel.finish(now)
        route.conn.wake()  # no longer among the live routes that pump() wakes

    def _cancelled(self, request_id: RequestId, now: float) -> None:
        call = self.calls.pop(request_id, None)
        if call is not None:
            self.service.stop_call(call, cancelled=True)
        waiting = self.json_waiting.pop(request_id, None)
        if waiting is not None:
            self.service.respond_empty(waiting, now)
        route = self.routes.pop(request_id, None)
        if route is not None:
            # A cancelled request gets no response: its stream just ends.
            self.service.forget_route(route)
            if route.stream is not None:
                self.finished.add(route.stream)
            route.channel.finish(now)
            route.conn.wake()

    # --- connections ---------------------------------------------------------------------------

    def drain(self, route: Route, now: float) -> None:
        """Re-send a resumed stream's backlog while its client keeps up; the calls it carries
        stay held until the backlog is gone, and a finished stream then ends."""
        while route.backlog and not route.channel.paused:
            event_id, text = route.backlog.popleft()
            route.channel.replay(event_id, text, route.request_id, now)
        if not route.backlog and route.stream in self.finished and route.request_id is not None:
            self._finish_route(route, now)
            return
        self.hold_calls(route, held=bool(route.backlog) or route.channel.paused)

    def hold_calls(self, route: Route, *, held: bool) -> None:
        """Backpressure on a route's bulk stream reaches the calls it carries."""
        calls = (
            [self.calls[route.request_id]]
            if route.request_id is not None and route.request_id in self.calls
            else [call for rid, call in self.calls.items() if rid not in self.routes]
        )
        for call in calls:
            call.paused = held
            if call.generation is not None:
                call.generation.update_gate()

    def route_closed(self, route: Route, now: float) -> None:
        """The connection under a route went away."""
        if route is self.standing:
            self.standing = None
        elif route.request_id is not None:
            self.routes.pop(route.request_id, None)
        if self.transport in (
            Transport.WEBSOCKET,
            Transport.LEGACY_SSE,
            Transport.MODERN,
            Transport.STDIO,
        ):
            # Nothing can reach this client again: its calls stop now (not after a grace).
            self.close(now)
        else:
            # Streamable HTTP: a dropped stream is not a cancellation. Its call is held (no
            # compute for a client that may not come back) until the client resumes it, or
            # the idle session expires and its calls are cancelled.
            self.hold_calls(route, held=True)

    def close(self, now: float) -> None:
        self.replies.clear()
        self.session.close()
        self.pump(now)
        for call in list(self.calls.values()):
            self.service.stop_call(call, cancelled=True)
        self.calls.clear()
        for waiting in self.json_waiting.values():
            self.service.respond_empty(waiting, now)
        self.json_waiting.clear()
        for route in self.live_routes():
            self.service.forget_route(route)
            if route.conn.conn.state.value in ("streaming", "websocket"):
                route.conn.conn.close(now)
                route.conn.wake()
        self.routes.clear()
        self.standing = None
