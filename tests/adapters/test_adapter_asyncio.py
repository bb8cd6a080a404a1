"""The asyncio adapter (one ``asyncio.Protocol`` per connection), on asyncio and on uvloop,
driven by real clients over 127.0.0.1.

What every runtime must do (streams, shutdown with 1001, backpressure, timeouts, workers,
the command line) is in the conformance suite of tests/adapters; this file keeps what is
particular to this adapter:

- no task per connection (the loop's task count does not grow with connections), slotted
  sessions, TCP_NODELAY on accepted sockets;
- one ``TimerHandle`` per connection, re-armed only when the core's deadline moves;
- a peer that stops reading: the transport holds bytes, the core counts them as in flight
  and takes no more until the transport drained (then the stream goes on to its end);
- inbound flow control pauses the transport's reading, not only the core's wants_data.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import cast

import pytest
from conformance_support import (
    long_text,
    open_and_stop_reading,
    pipeline_until_refused,
)
from support import POLL_LIMIT, Echo, fast_source, serving, wait_until
from websockets.sync.client import ClientConnection, connect

from diaproto.adapters._threaded import ThreadedServer
from diaproto.adapters.asyncio import AsyncioSession, Server
from diaproto.apps.serve.app import DiaService
from diaproto.config import ConnectionConfig, Limits
from diaproto.runtime import Application

LOOPS = ["asyncio", "asyncio+uvloop"]


@contextmanager
def serving_asyncio(
    loop: str, app: Application, config: ConnectionConfig | None = None
) -> Iterator[ThreadedServer[Server]]:
    """``support.serving`` on the asyncio adapter, with its server object at hand."""
    with serving(loop, app, config) as handle:
        assert isinstance(handle, ThreadedServer)
        yield cast("ThreadedServer[Server]", handle)


def ws_connect(port: int, path: str = "/ws") -> ClientConnection:
    return connect(f"ws://127.0.0.1:{port}{path}", proxy=None, open_timeout=5, close_timeout=5)


def only_session(server: ThreadedServer[Server]) -> AsyncioSession:
    (session,) = server.server.sessions
    return session


@pytest.mark.parametrize("loop", LOOPS)
def test_connections_cost_no_task_and_get_nodelay(loop: str) -> None:
    with serving_asyncio(loop, Echo()) as server, ExitStack() as clients:

        def tasks() -> int:
            return len(asyncio.all_tasks())

        before = server.call(tasks)
        peers = [clients.enter_context(ws_connect(server.port, "/echo")) for _ in range(20)]
        for n, peer in enumerate(peers):
            peer.send(f"m{n}")
            assert peer.recv(timeout=POLL_LIMIT) == f"echo: m{n}"
        sessions = server.call(lambda: list(server.server.sessions))
        assert len(sessions) == 20
        assert server.call(tasks) == before  # no task (nor task group) per connection
        assert not hasattr(sessions[0], "__dict__")  # slotted

        def nodelay() -> list[int]:
            return [
                s._transport.get_extra_info("socket").getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY
                )
                for s in server.server.sessions
                if s._transport is not None
            ]

        assert all(server.call(nodelay)) and len(server.call(nodelay)) == 20


@pytest.mark.parametrize("loop", LOOPS)
def test_one_timer_per_connection_rearmed_only_when_the_deadline_moves(loop: str) -> None:
    with (
        serving_asyncio(loop, Echo()) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=POLL_LIMIT) as sock,
    ):
        wait_until(lambda: server.call(lambda: len(server.server.sessions) == 1), "accepted")

        def timer() -> asyncio.TimerHandle | None:
            # uvloop's handles are not subclasses of asyncio.TimerHandle, only alike.
            return cast("asyncio.TimerHandle | None", only_session(server).pump.timer.handle)

        def step() -> None:
            only_session(server).pump.step()

        handshake = server.call(timer)  # the core's handshake deadline
        assert handshake is not None
        server.call(step)
        assert server.call(timer) is handshake  # same deadline: the same handle, not re-armed
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        # Answered: keep-alive waits for the next request under the idle deadline instead.
        wait_until(lambda: server.call(timer) is not handshake, "the timer moves")
        idle = server.call(timer)
        assert handshake.cancelled() and idle is not None and not idle.cancelled()
        assert idle.when() > handshake.when()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_full_transport_is_counted_and_holds_back_the_core(loop: str) -> None:
    service = DiaService(fast_source())
    with serving_asyncio(loop, service) as server:
        sock, _client = open_and_stop_reading(server.port, long_text(6))
        with sock:

            def held() -> tuple[bool, int, int]:
                session = only_session(server)
                transport = session._transport
                assert transport is not None
                return (
                    session._write_paused,
                    transport.get_write_buffer_size(),
                    session.conn.scheduler.buffered_bytes - session.conn.scheduler.queued_bytes(),
                )

            wait_until(lambda: server.call(held)[0], "the transport pauses writing")
            paused, in_transport, in_flight = server.call(held)
            # The core's write window and budget see exactly what the transport holds.
            assert paused and in_transport > 0 and in_flight == in_transport
            # Reading again drains the transport, and the stream runs on to its end
            # (resume_writing runs the next step each time the transport drained). The
            # kernel holds little unsent (TCP_NOTSENT_LOWAT), so the rest must be read.
            sock.settimeout(0.05)

            def finished() -> bool:
                return all(g.finished for g in service.generations.live.values())

            def read_on() -> bool:
                until = time.monotonic() + 0.5
                with contextlib.suppress(TimeoutError):
                    while time.monotonic() < until and sock.recv(65536):
                        pass
                return server.call(finished)

            wait_until(read_on, "the generation ends")
            assert not server.call(held)[0]


def test_a_peer_that_pipelines_without_end_pauses_the_transports_reading() -> None:
    # The conformance suite checks the core stops asking (wants_data); here, that the
    # transport stopped reading too (pause_reading()).
    config = ConnectionConfig(limits=Limits(max_buffered_inbound=256 * 1024))
    service = DiaService(fast_source())
    with (
        serving_asyncio("asyncio", service, config) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=POLL_LIMIT) as sock,
    ):
        target = "/v1/stream?text=" + long_text(30).replace(" ", "%20")
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        wait_until(lambda: server.call(lambda: bool(service._sessions)), "the stream starts")
        pipeline_until_refused(sock)

        def not_reading() -> bool:
            session = only_session(server)
            return not session.conn.wants_data and session._read_paused

        assert server.call(not_reading)
