"""diaproto: the benchmark endpoints as one :class:`diaproto.runtime.Application`, on any runtime.

Producers write in chunks from ``call_later(0, ...)`` callbacks so the loop gets to write
between them, and stop at ``StreamPaused`` until ``StreamResumed`` (the PAUSE policy): the
scheduler batches what they queue. The 50 Hz ticks use DROP_OLDEST with a 256 KiB share, the
policy for live audio: a stalled client loses its oldest frames, the server's memory stays
bounded.

``/bulk?credit=N`` (diaproto only: the peers have no credit) opens the bulk stream with N bytes
of credit; the client grants more with diaproto.v1's credit message as a text message. The
core applies that message itself only on a diaproto.v1 connection, which also frames data as
wire records and takes no text messages: to keep the frames of the plain ``/bulk``, this
app accepts plain WebSocket and applies the grant itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from diaproto import adapters
from diaproto.config import ConnectionConfig, Timeouts
from diaproto.events import (
    ConnectionClosed,
    Event,
    Request,
    SseRequest,
    StreamResumed,
    WebSocketMessage,
    WebSocketRequest,
)
from diaproto.runtime import Cancellable, Session
from diaproto.scheduler import Policy, Priority
from diaproto.wire import GrantCredit, decode_client_message

from . import BULK_SIZE, control_text, route, stamped

DATA, CONTROL = 1, 2
CHUNK = 2048  # messages queued per callback before the loop gets to write
TICK_SHARE = 256 * 1024

#: The clients count bytes and answer no pings: keepalive is off on every server in the suite.
CONFIG = ConnectionConfig(
    timeouts=Timeouts(idle=None, ping_interval=None, ping_timeout=None, sse_heartbeat=None)
)


@dataclass
class _Job:
    session: Session
    kind: str
    params: dict[str, float]
    sse: bool = False
    sent: int = 0
    done: bool = False
    timers: list[Cancellable] = field(default_factory=list)
    started: float = 0.0


class BenchApp:
    """Every endpoint of :mod:`benchmarks.peers` on the diaproto core."""

    def __init__(self, *, per_message: bool = False) -> None:
        self._jobs: dict[int, _Job] = {}
        self.per_message = per_message  # bursts with send() one by one, not send_many()

    def handle_event(self, session: Session, event: Event) -> None:
        conn = session.conn
        now = session.runtime.now()
        if isinstance(event, WebSocketRequest):
            kind, params = route(event.target)
            conn.accept_websocket(None, now=now)
            self._start(_Job(session, kind, params), now)
        elif isinstance(event, SseRequest):
            kind, params = route(event.target)
            conn.accept_sse(now=now)
            self._start(_Job(session, kind, params, sse=True), now)
        elif isinstance(event, Request):
            conn.respond(404, (("content-type", "text/plain"),), b"not found\n", now=now)
        elif isinstance(event, WebSocketMessage) and isinstance(event.data, str):
            # A malformed message raises: a broken client must fail the run, not go unseen.
            message = decode_client_message(event.data)
            if isinstance(message, GrantCredit):
                conn.scheduler.grant_credit(message.stream_id, message.nbytes)
                session.wake()
        elif isinstance(event, StreamResumed):
            job = self._jobs.get(id(conn))
            if job is not None and event.stream_id == DATA:
                self._produce(job)
        elif isinstance(event, ConnectionClosed):
            job = self._jobs.pop(id(conn), None)
            if job is not None:
                job.done = True
                for timer in job.timers:
                    timer.cancel()

    def shutdown(self) -> None:
        for job in self._jobs.values():
            job.done = True
            for timer in job.timers:
                timer.cancel()

    def _start(self, job: _Job, now: float) -> None:
        conn = job.session.conn
        self._jobs[id(conn)] = job
        job.started = now
        if job.kind in ("push", "sse", "bulk"):
            credit = job.params.get("credit")
            conn.open_stream(
                DATA,
                now,
                priority=Priority.STREAM,
                policy=Policy.PAUSE,
                credit=None if credit is None else int(credit),
            )
            if job.kind == "bulk":
                conn.open_stream(CONTROL, now, priority=Priority.CONTROL)
                self._every(job, job.params.get("interval", 0.05), self._control)
            self._later(job, 0.0, lambda: self._produce(job))
        elif job.kind == "tick":
            conn.open_stream(
                DATA, now, priority=Priority.STREAM, policy=Policy.DROP_OLDEST, limit=TICK_SHARE
            )
            self._every(job, job.params.get("interval", 0.02), self._tick)

    def _later(self, job: _Job, delay: float, callback: Callable[[], None]) -> None:
        job.timers = [t for t in job.timers[-8:]]  # keep the list short; old ones have fired
        job.timers.append(job.session.runtime.call_later(delay, callback))

    def _every(self, job: _Job, interval: float, action: Callable[[_Job], bool]) -> None:
        """Run ``action`` at start + k * interval (no drift) until it returns False."""
        runtime = job.session.runtime
        count = 0

        def fire() -> None:
            nonlocal count
            if job.done or not action(job):
                return
            job.session.wake()
            count += 1
            delay = job.started + count * interval - runtime.now()
            self._later(job, max(0.0, delay), fire)

        self._later(job, 0.0, fire)

    def _tick(self, job: _Job) -> bool:
        total = int(job.params.get("count", 50))
        if job.sent >= total:
            job.session.conn.end_stream(DATA, job.session.runtime.now())
            return False
        job.session.conn.send(
            DATA, stamped(int(job.params.get("size", 1764))), job.session.runtime.now()
        )
        job.sent += 1
        return True

    def _control(self, job: _Job) -> bool:
        job.session.conn.send(CONTROL, control_text(), job.session.runtime.now())
        return True

    def _produce(self, job: _Job) -> None:
        if job.done:
            return
        conn = job.session.conn
        now = job.session.runtime.now()
        bulk = job.kind == "bulk"
        total = 1 << 62 if bulk else int(job.params.get("n", 1000))
        size = BULK_SIZE if bulk else int(job.params.get("size", 32))
        payload: bytes | str = ("x" * size) if job.sse else bytes(size)
        scheduler = conn.scheduler
        stop = min(total, job.sent + CHUNK)
        if self.per_message:
            while job.sent < stop and not scheduler.is_paused(DATA):
                conn.send(DATA, payload, now)
                job.sent += 1
        batch = max(1, TICK_SHARE // max(size, 1))  # a burst goes in as lists (send_many)
        while job.sent < stop and not scheduler.is_paused(DATA):
            n = min(stop - job.sent, batch)
            conn.send_many(DATA, [payload] * n, now)
            job.sent += n
        if job.sent >= total:
            job.done = True
            if job.sse:
                conn.end_response(now)
            else:
                conn.end_stream(DATA, now)
        elif not scheduler.is_paused(DATA):
            self._later(job, 0.0, lambda: self._produce(job))
        job.session.wake()


def serve(port: int, runtime: str) -> None:
    """Serve until SIGTERM. ``runtime``: asyncio, uvloop, anyio, trio, tornado or sockets;
    a ``-send`` suffix pushes bursts with one ``send()`` per message."""
    runtime, _, mode = runtime.partition("-")
    uvloop = runtime == "uvloop"
    name = "asyncio" if uvloop else runtime
    app = BenchApp(per_message=mode == "send")
    adapters.run(name, app, "127.0.0.1", port, config=CONFIG, use_uvloop=uvloop)
