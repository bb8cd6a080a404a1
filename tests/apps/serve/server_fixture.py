"""The real service, on the anyio adapter, in a background thread on 127.0.0.1:<ephemeral>.

Tests talk to it with independent clients over real sockets and may inspect the service
object (its generations, its metrics) between calls. ``running_app`` does the same for any
:class:`diaproto.runtime.Application` (tests of the adapter itself).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from support import fast_source
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from diaproto.adapters.anyio import Server, serve_in_background
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.limits import MAX_SSE_LEAD, ServiceLimits
from diaproto.apps.serve.sources import Source
from diaproto.config import ConnectionConfig
from diaproto.runtime import Application

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
SUBPROTOCOL = Subprotocol("diaproto.v1")


@dataclass
class RunningApp:
    server: Server
    port: int
    token: Any
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def call(self, function: Any, *args: Any) -> Any:
        """Run ``function`` on the server's loop thread (its state is not thread-safe)."""
        return anyio.from_thread.run_sync(function, *args, token=self.token)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the server gracefully; True once its thread has ended (within ``timeout``)."""
        if self.thread.is_alive():
            with suppress(RuntimeError):  # the loop already ended
                self.call(self.server.stop)
        self.thread.join(timeout=timeout)
        return not self.thread.is_alive()


@dataclass
class RunningServer(RunningApp):
    service: DiaService


def ws_connect(server: RunningApp) -> ClientConnection:
    """A websockets client on the server's /ws, offering diaproto.v1."""
    return connect(server.ws_url, subprotocols=[SUBPROTOCOL], proxy=None, open_timeout=5)


@contextmanager
def running_app(
    app: Application, *, backend: str = "asyncio", config: ConnectionConfig | None = None
) -> Iterator[RunningApp]:
    """Serve ``app`` on 127.0.0.1:<ephemeral> in a thread; stopped (and joined) on exit."""
    started = threading.Event()
    box: list[tuple[Server, int, Any]] = []
    failure: list[BaseException] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            server, port = await serve_in_background(app, tg, config=config)
            box.append((server, port, anyio.lowlevel.current_token()))
            started.set()

    def target() -> None:
        try:
            anyio.run(main, backend=backend)
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=target, name="diaproto-test-server", daemon=True)
    thread.start()
    if not started.wait(STARTUP_TIMEOUT) or failure:
        raise RuntimeError(f"the server did not start: {failure}")
    server, port, token = box[0]
    running = RunningApp(server, port, token, thread)
    try:
        yield running
    finally:
        if not running.stop():
            raise RuntimeError(f"the server did not stop within {STOP_TIMEOUT} s")
        if failure:
            raise RuntimeError(f"the server failed: {failure}")


@contextmanager
def running_server(
    source: Source | None = None,
    *,
    backend: str = "asyncio",
    config: ConnectionConfig | None = None,
    resume_grace: float = 10.0,
    **service_options: Any,
) -> Iterator[RunningServer]:
    # SSE is paced (its code path runs) with the longest lead, so that tests of other things
    # are not held to real time by the 50x-fast test voice; tests of pacing pass their own.
    service_options.setdefault("limits", ServiceLimits(sse_lead=MAX_SSE_LEAD))
    service = DiaService(source or fast_source(), resume_grace=resume_grace, **service_options)
    with running_app(service, backend=backend, config=config) as app:
        yield RunningServer(app.server, app.port, app.token, app.thread, service)
