"""How a server stops, the same on every runtime: on SIGINT or SIGTERM, the application told
first (it stops its producers), every connection closed with ``CloseCode.GOING_AWAY``, then a
grace for the close handshakes, after which the connections left are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

from diaproto.adapters._pump import now
from diaproto.adapters._threaded import AsyncServer, RunLoop
from diaproto.config import ConnectionConfig
from diaproto.errors import CloseCode
from diaproto.runtime import Application
from diaproto.server import ServerConnection

log = logging.getLogger("diaproto.adapters")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEFAULT_CLOSE_TIMEOUT = 5.0  # the grace when the configuration disables the close timeout


class Steps(Protocol):
    """A connection the server can step from its loop (a pump, or anyio's session)."""

    @property
    def conn(self) -> ServerConnection: ...

    def step(self) -> None: ...


def close_all(app: Application, connections: Iterable[Steps]) -> None:
    """Loop thread: stop the application's producers, then close every connection."""
    app.shutdown()
    for connection in list(connections):
        connection.conn.close(now(), CloseCode.GOING_AWAY, "server shutting down")
        connection.step()


def grace(config: ConnectionConfig) -> float:
    """Seconds the close handshakes get before the connections left are dropped."""
    return (config.timeouts.close_timeout or DEFAULT_CLOSE_TIMEOUT) + 1.0


def stop_on_signal(stop: Callable[[], None], signum: int) -> None:
    log.info("received %s: shutting down", signal.Signals(signum).name)
    stop()


@contextmanager
def loop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``stop`` on an asyncio loop (tornado 6 runs on one too)."""
    for signum in SIGNALS:
        loop.add_signal_handler(signum, stop_on_signal, stop, signum)
    try:
        yield
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)


def serve_until_signal(
    make: Callable[[], AsyncServer],
    host: str,
    port: int,
    ready: Callable[[str, int], None] | None,
    run: RunLoop,
) -> None:
    """``make()`` a server on a new asyncio loop and serve until SIGINT or SIGTERM."""

    async def main() -> None:
        server = make()
        with loop_signals(asyncio.get_running_loop(), server.stop):
            await server.serve(host, port, ready)

    run(main())


@contextmanager
def process_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``stop`` from the main thread's handler (no asyncio loop);
    ``stop`` must be safe there. The previous handlers come back on exit."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_on_signal(stop, signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
