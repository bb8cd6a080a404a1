"""The same :class:`BenchApp` on the diaproto core, pumped from a plain asyncio ``Protocol``
(as ``examples/asyncio_protocol.py`` does): the prototype ``adapters/asyncio.py`` grew from,
kept side by side to compare. It first showed how much of a figure was the anyio adapter's
(two tasks, a cancel scope and an ``Event`` per connection; a task per ``call_later``).
``call_later`` is a ``TimerHandle``; writes happen synchronously in ``pump``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from diaproto.runtime import Cancellable
from diaproto.server import ServerConnection

from .diaproto_app import CONFIG, BenchApp


class LoopRuntime:
    """The :class:`diaproto.runtime.Runtime` on the running asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def now(self) -> float:
        return self.loop.time()

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return self.loop.call_later(delay, callback)

    def start_worker(self, target: Callable[[], None], name: str = "worker") -> None:
        self.loop.run_in_executor(None, target)


class PumpProtocol(asyncio.Protocol):
    """One connection: feed the core, hand its events to the app, write what it produced."""

    def __init__(self, app: BenchApp, runtime: LoopRuntime) -> None:
        self.app, self.runtime = app, runtime
        self.conn = ServerConnection(runtime.now(), CONFIG)
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.scheduled = False
        self.peer = ""

    # Session
    def wake(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.runtime.loop.call_soon(self.pump)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data, self.runtime.now())
        self.pump()

    def eof_received(self) -> None:
        self.conn.receive_eof(self.runtime.now())
        self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.receive_eof(self.runtime.now())
        self.dispatch()
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.conn.set_transport_buffered(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self.conn.set_transport_buffered(0)
        self.pump()

    def dispatch(self) -> None:
        while (event := self.conn.next_event()) is not None:
            self.app.handle_event(self, event)

    def pump(self, timer: bool = False) -> None:
        self.scheduled = False
        transport = self.transport
        if transport is None:
            return
        now = self.runtime.now()
        if timer:
            self.conn.handle_timer(now)
        self.dispatch()
        while not transport.is_closing():
            self.conn.set_transport_buffered(transport.get_write_buffer_size())
            data = self.conn.data_to_send(now)
            self.dispatch()  # taking a batch can resume a paused producer
            if not data:
                break
            transport.write(data)
        if self.conn.finished:
            transport.close()
            return
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.conn.next_deadline()
        self.timer = (
            None if deadline is None else self.runtime.loop.call_at(deadline, self.pump, True)
        )


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    app, runtime = BenchApp(), LoopRuntime(loop)
    server = await loop.create_server(lambda: PumpProtocol(app, runtime), "127.0.0.1", port)
    with contextlib.suppress(asyncio.CancelledError):
        await server.serve_forever()


def serve(port: int) -> None:
    asyncio.run(main(port))
