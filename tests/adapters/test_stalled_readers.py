"""Peers that stop reading (their receive window fills, our writes block) are disconnected
within a bounded time on every runtime, and their sockets are really closed: not kept open
while the transport waits to flush bytes the peer will never take (issue 12, defect 2).

A stalled reader is a raw socket with a small ``SO_RCVBUF`` that never calls ``recv``.
Waits are bounded polls with generous limits, never timing assertions.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import partial

from conformance_support import Probe, RawWebSocket
from support import serving, wait_until

from diaproto.config import ConnectionConfig, SchedulerConfig, Timeouts
from diaproto.events import Event, SseRequest
from diaproto.runtime import Session
from diaproto.scheduler import Policy

# Small enough that a few top-ups fill everything between us and the stalled peer.
SCHEDULER = SchedulerConfig(
    high_watermark=256 * 1024, low_watermark=64 * 1024, max_buffered=1024 * 1024
)
DISCONNECT_LIMIT = 60.0  # generous: the configured timeouts below are about a second
RCVBUF = 4096


@dataclass(eq=False)
class StallProbe(Probe):
    """The Probe, plus ``GET /sse``: an SSE response with stream 1 open for ``top_up``."""

    def handle_event(self, session: Session, event: Event) -> None:
        if isinstance(event, SseRequest):
            conn, now = session.conn, session.runtime.now()
            conn.accept_sse(now=now)
            conn.open_stream(1, now, policy=Policy.PAUSE, limit=conn.config.scheduler.max_buffered)
            self.sessions.append(session)
            self.enqueued[(len(self.sessions) - 1, 1)] = 0
            return
        super().handle_event(session, event)


def stalled_sse(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.settimeout(10.0)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    return sock


def server_hung_up(sock: socket.socket) -> bool:
    """True once the server's end of the connection is gone. Bytes sent to a closed socket
    are answered with a reset, so a send fails within a round trip or two; while the server
    holds the socket open (waiting to flush), sends keep being accepted."""
    try:
        sock.send(b"\r\n")
    except OSError:
        return True
    return False


def top_up_all(probe: Probe, streams: list[tuple[int, int]]) -> bool:
    """Loop thread: keep every stalled connection's queue full; True once every one of them
    has bytes waiting in its scheduler (the transport took all it will)."""
    full = True
    for index, stream in streams:
        if probe.sessions[index].conn.finished:
            continue
        probe.top_up(index, stream, 128 * 1024)
        full = full and probe.queued(index, stream) > 0
    return full


def test_stalled_websocket_and_sse_readers_are_disconnected(runtime: str) -> None:
    # No heartbeat or idle timer would ever fire here: only the write timeout can end it.
    timeouts = Timeouts(
        ping_interval=None,
        ping_timeout=None,
        idle=None,
        sse_heartbeat=None,
        close_timeout=0.5,
        write_timeout=1.0,
    )
    probe = StallProbe()
    config = ConnectionConfig(timeouts=timeouts, scheduler=SCHEDULER)
    with serving(runtime, probe, config) as handle:
        websockets = [RawWebSocket(handle.port, rcvbuf=RCVBUF) for _ in range(3)]
        sse = [stalled_sse(handle.port) for _ in range(2)]
        try:
            for ws in websockets:
                ws.send_json({"type": "open", "stream": 1, "text": "bulk"})
            wait_until(lambda: handle.call(lambda: len(probe.enqueued)) == 5, "all streams open")
            streams = handle.call(lambda: list(probe.enqueued))
            wait_until(
                lambda: handle.call(lambda: top_up_all(probe, streams)),
                "every stalled connection is write-blocked",
                limit=DISCONNECT_LIMIT,
            )
            wait_until(
                lambda: handle.call(lambda: len(probe.closed)) == 5,
                "the server dropped every stalled reader",
                limit=DISCONNECT_LIMIT,
            )
            for sock in [ws.sock for ws in websockets] + sse:
                wait_until(partial(server_hung_up, sock), "the socket is closed")
        finally:
            for ws in websockets:
                ws.sock.close()
            for sock in sse:
                sock.close()


def test_stalled_websocket_is_dropped_by_the_ping_timeout(runtime: str) -> None:
    """A stalled peer cannot answer a ping that cannot reach it: the ping timeout drops it,
    and the socket is closed rather than held open to flush the close frame."""
    timeouts = Timeouts(ping_interval=0.3, ping_timeout=0.5, idle=None, close_timeout=0.5)
    probe = StallProbe()
    config = ConnectionConfig(timeouts=timeouts, scheduler=SCHEDULER)
    with (
        serving(runtime, probe, config) as handle,
        RawWebSocket(handle.port, rcvbuf=RCVBUF) as ws,
    ):
        ws.send_json({"type": "open", "stream": 1, "text": "bulk"})
        wait_until(lambda: handle.call(lambda: len(probe.enqueued)) == 1, "the stream opened")
        wait_until(
            lambda: handle.call(lambda: top_up_all(probe, [(0, 1)])),
            "the connection is write-blocked",
            limit=DISCONNECT_LIMIT,
        )
        wait_until(
            lambda: handle.call(lambda: bool(probe.closed)),
            "the server dropped the stalled reader",
            limit=DISCONNECT_LIMIT,
        )
        wait_until(lambda: server_hung_up(ws.sock), "the socket is closed")


def test_closing_a_stalled_connection_aborts_it_after_the_flush_deadline(runtime: str) -> None:
    """The application closes a connection whose peer does not read: the last bytes get the
    close timeout to leave, then the socket is reset instead of waiting on the peer."""
    timeouts = Timeouts(
        ping_interval=None,
        ping_timeout=None,
        idle=None,
        sse_heartbeat=None,
        close_timeout=0.5,
        write_timeout=None,  # only the flush deadline can end it
    )
    probe = StallProbe()
    config = ConnectionConfig(timeouts=timeouts, scheduler=SCHEDULER)
    with serving(runtime, probe, config) as handle:
        sock = stalled_sse(handle.port)
        try:
            wait_until(lambda: handle.call(lambda: len(probe.enqueued)) == 1, "the stream opened")
            wait_until(
                lambda: handle.call(lambda: top_up_all(probe, [(0, 1)])),
                "the connection is write-blocked",
                limit=DISCONNECT_LIMIT,
            )

            def close() -> None:
                session = probe.sessions[0]
                session.conn.close(session.runtime.now())
                session.wake()

            handle.call(close)
            wait_until(lambda: handle.call(lambda: bool(probe.closed)), "the application heard")
            wait_until(lambda: server_hung_up(sock), "the socket is closed", limit=DISCONNECT_LIMIT)
        finally:
            sock.close()
