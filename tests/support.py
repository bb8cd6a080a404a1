"""What many tests share: one way to wait, one way to run a server, one echo application.

Waits are on conditions with generous limits, never on how fast an idle CPU is: the suite
must pass on a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from diaproto import adapters
from diaproto.config import ConnectionConfig
from diaproto.events import Event, Request, WebSocketMessage, WebSocketRequest
from diaproto.runtime import Application, ServerHandle, Session

POLL_LIMIT = 10.0  # seconds a bounded wait may take before the test fails
STOP_LIMIT = 15.0  # seconds a server may take to stop


def wait_until(predicate: Callable[[], bool], what: str, limit: float = POLL_LIMIT) -> None:
    """Return once ``predicate()`` holds; fail with ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting until {what}")
        time.sleep(0.02)


def start(runtime: str, app: Application, config: ConnectionConfig | None = None) -> ServerHandle:
    """``app`` served on 127.0.0.1 by the runtime's adapter, in a thread; ``runtime`` is an
    adapter runtime name, or ``asyncio+uvloop``."""
    name, _, loop = runtime.partition("+")
    return adapters.start_in_thread(name, app, "127.0.0.1", 0, config, use_uvloop=loop == "uvloop")


@contextmanager
def serving(
    runtime: str, app: Application, config: ConnectionConfig | None = None
) -> Iterator[ServerHandle]:
    """``app`` served on 127.0.0.1 by the runtime's adapter, in a thread, for the block;
    stopped (and its stop checked) on exit."""
    handle = start(runtime, app, config)
    try:
        yield handle
    finally:
        stopped = handle.stop(STOP_LIMIT)
    assert stopped, f"the {runtime} server did not stop within {STOP_LIMIT} s"


class Echo:
    """Plain WebSocket echo that raises on "boom"; HTTP requests get 200 "ok"."""

    def __init__(self) -> None:
        self.shut_down = False

    def handle_event(self, session: Session, event: Event) -> None:
        conn, now = session.conn, session.runtime.now()
        match event:
            case Request():
                conn.respond(200, (("content-type", "text/plain"),), b"ok", now=now)
            case WebSocketRequest():
                conn.accept_websocket(None, now=now)
                conn.open_stream(1, now)
            case WebSocketMessage(data=str() as text):
                if text == "boom":
                    raise RuntimeError("the application failed")
                conn.send(1, f"echo: {text}", now)
            case _:
                pass

    def shutdown(self) -> None:
        self.shut_down = True
