"""The real service, on the anyio adapter, in a background thread on 127.0.0.1:<ephemeral>.

Tests talk to it with independent clients over real sockets and may inspect the service
object (its generations, its metrics) between calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from diaproto.adapters.anyio import Server, serve_in_background
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.sources import Source, SyntheticSource
from diaproto.config import ConnectionConfig

STARTUP_TIMEOUT = 10.0


@dataclass
class RunningServer:
    service: DiaService
    server: Server
    port: int
    token: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def call(self, function: Any, *args: Any) -> Any:
        """Run ``function`` on the server's loop thread (its state is not thread-safe)."""
        return anyio.from_thread.run_sync(function, *args, token=self.token)


def fast_source() -> Source:
    """The synthetic voice, paced 20x faster than Dia so tests stay short."""
    return SyntheticSource(real_time_factor=0.02, first_chunk_latency=0.005)


@contextmanager
def running_server(
    source: Source | None = None,
    *,
    backend: str = "asyncio",
    config: ConnectionConfig | None = None,
    resume_grace: float = 10.0,
) -> Iterator[RunningServer]:
    service = DiaService(source or fast_source(), resume_grace=resume_grace)
    started = threading.Event()
    box: list[RunningServer] = []
    failure: list[BaseException] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            server, port = await serve_in_background(service, tg, config=config)
            box.append(RunningServer(service, server, port, anyio.lowlevel.current_token()))
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
    running = box[0]
    try:
        yield running
    finally:
        running.call(running.server.stop)
        thread.join(timeout=15)
        if thread.is_alive():
            raise RuntimeError("the server did not stop within 15 s")
