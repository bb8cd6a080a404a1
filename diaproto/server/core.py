"""What every part of a server connection shares: its buffers, and the few operations each
part uses (change state, close, write a response byte, queue a control message).

:class:`~diaproto.server.ServerConnection` is this core plus three parts, each in its own
module: the HTTP/1.1 front (:mod:`diaproto.server.http`), the WebSocket session
(:mod:`diaproto.server.websocket`) and the outbound streams (:mod:`diaproto.server.streams`).
They are mixins over one object, so the pump's hot path reads plain attributes.
"""

from __future__ import annotations

import h11
from wsproto.connection import Connection as WsConnection

from diaproto.config import ConnectionConfig
from diaproto.errors import LocalProtocolError
from diaproto.events import ConnectionClosed, Event
from diaproto.keepalive import Keepalive
from diaproto.scheduler import Outgoing, Policy, Priority, Scheduler, StreamOptions
from diaproto.server.framing import Framer, Payload
from diaproto.server.state import NEXT_STATES, State

CONTROL_STREAM = -1  # internal stream for control messages; never a wire stream id


def control_stream_options(config: ConnectionConfig) -> StreamOptions[Payload]:
    """The control stream's scheduling: ahead of every stream, never dropped, bounded by the
    connection's budget (past it the peer is disconnected)."""
    return StreamOptions(
        priority=Priority.CONTROL,
        policy=Policy.DISCONNECT,
        limit=config.scheduler.max_buffered,
        grace=0.0,
    )


class ConnectionCore:
    """The shared state of one server connection; the parts add their own."""

    # One slotted layout for the whole connection, the core's attributes and the parts'
    # (mixins over one object cannot each add slots): a connection has too many attributes
    # for a shared-key instance dict, and a dict of its own cost ~1.6 KiB.
    __slots__ = (
        "_assembler",
        "_blocked_since",
        "_body",
        "_body_size",
        "_clock",
        "_closed_at",
        "_cycle_bytes",
        "_cycle_started",
        "_drop",
        "_ending",
        "_eof",
        "_events",
        "_first_cycle",
        "_framer",
        "_h11",
        "_h11_fed",
        "_handed_out",
        "_head_start",
        "_held_inbound",
        "_keepalive",
        "_last_sse_write",
        "_out",
        "_output_open",
        "_passed",
        "_pending",
        "_request",
        "_scheduler",
        "_sse",
        "_transport_buffered",
        "_wire",
        "_ws",
        "_ws_events",
        "bytes_sent",
        "config",
        "extensions",
        "response_status",
        "state",
        "subprotocol",
        "unsent",
    )

    def __init__(self, now: float, config: ConnectionConfig | None) -> None:
        self.config = config or ConnectionConfig()
        self.state = State.AWAITING_REQUEST
        self._output_open = False  # state is STREAMING or WEBSOCKET: kept by _enter
        # Dropped after a WebSocket upgrade: no HTTP path runs after it (see _http).
        self._h11: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.config.limits.max_header_bytes
        )
        # A list, not a deque (~760 B even empty): one step of progress adds a few events
        # at most, and next_event drains them before the next step.
        self._events: list[Event] = []
        self._out = bytearray()
        # A message the scheduler let through at once (Scheduler.pass_through): the next
        # data_to_send frames it ahead of any batch.
        self._passed: Outgoing[Payload] | None = None
        # data_to_send handed out bytes the transport has not reported on since: they are
        # counted nowhere yet, so nothing may be let through (it would escape the budget).
        self._handed_out = False
        self._scheduler: Scheduler[Payload] = Scheduler(self.config.scheduler)
        self._keepalive = Keepalive(self.config.timeouts, now)
        self._request: h11.Request | None = None
        self._pending: Event | None = None  # the request event awaiting an answer
        self._eof = False
        self._ws: WsConnection | None = None
        self._wire = False  # the WebSocket speaks diaproto.v1
        self._framer: Framer | None = None
        self._sse = False
        self._last_sse_write = now
        self._ending = False
        self._transport_buffered = 0
        # Since when the transport has held bytes without the peer taking any (None: it holds
        # none). The write timeout runs from here.
        self._blocked_since: float | None = None
        self._clock = now  # the latest time the caller gave us
        self._closed_at: float | None = None
        self._drop = False  # closed because the peer stopped reading: abort, do not flush
        #: What was queued and never sent when the connection closed (set on close).
        self.unsent: list[Payload] = []
        #: Bytes ``data_to_send`` handed out in all (an access log's count; no I/O here).
        self.bytes_sent = 0
        #: The status of the latest response head (101: the upgrade; None: none yet).
        self.response_status: int | None = None

    @property
    def bytes_produced(self) -> int:
        """``bytes_sent`` and the output not handed out yet (what the scheduler still queues
        is not counted: it is not framed yet)."""
        return self.bytes_sent + len(self._out)

    def _expect_pending(self) -> Event:
        if self.state is not State.REQUEST_RECEIVED or self._pending is None:
            raise LocalProtocolError(f"no request is waiting for an answer (state {self.state})")
        return self._pending

    def _enter(self, state: State) -> None:
        # The one place the state changes, so the per-message check is a bool.
        if state not in NEXT_STATES[self.state]:
            raise LocalProtocolError(f"no transition from {self.state.name} to {state.name}")
        self.state = state
        self._output_open = state is State.STREAMING or state is State.WEBSOCKET

    def _expect_output(self) -> None:
        if not self._output_open:
            raise LocalProtocolError(f"no open stream to send on (state {self.state})")

    @property
    def _http(self) -> h11.Connection:
        assert self._h11 is not None, "the HTTP connection is gone after a WebSocket upgrade"
        return self._h11

    def _h11_send(self, event: h11.Event) -> None:
        try:
            data = self._http.send(event)
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from exc
        if isinstance(event, h11.Response | h11.InformationalResponse) and event.status_code > 100:
            self.response_status = event.status_code
        if data:
            self._out += data

    def _write_body(self, data: bytes) -> None:
        if self._ws is not None:
            self._out += data
        elif not self._answering_head():  # a HEAD response has no body to write
            self._h11_send(h11.Data(data=data))

    def _answering_head(self) -> bool:
        return self._request is not None and self._request.method == b"HEAD"

    def _open_control_stream(self, now: float) -> None:
        self._scheduler.open_stream(CONTROL_STREAM, now, control_stream_options(self.config))

    def _frame_passed(self, now: float) -> None:
        """Frame the message let through now, ahead of what is about to be written (a
        close): it had left the scheduler."""
        passed, self._passed = self._passed, None
        if passed is not None and self._framer is not None:
            self._scheduler.took(now)
            self._write_body(self._framer([passed]))

    def _control(self, text: str, now: float) -> None:
        """Queue a WebSocket control message; the control stream is opened on first use, so
        an idle connection holds no stream."""
        if not self._scheduler.has_stream(CONTROL_STREAM):
            self._open_control_stream(now)
        self._scheduler.enqueue(CONTROL_STREAM, text, len(text), now)

    def _set_closed(self, code: int | None, reason: str) -> None:
        self._enter(State.CLOSED)  # once: the table has no way out of CLOSED
        self._closed_at = self._clock
        self._framer = None
        # Kept for the application: a resumable stream records what never left.
        passed, self._passed = self._passed, None
        self.unsent = [item.payload for item in self._scheduler.queued_items()]
        if passed is not None:
            self.unsent.insert(0, passed.payload)
        for stream_id in self._scheduler.stream_ids:
            self._scheduler.discard_stream(stream_id)  # each reports StreamFinished
        self._events.append(ConnectionClosed(code, reason))
