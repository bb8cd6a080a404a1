"""Embedding the core in a plain asyncio Protocol, no adapter: priorities and backpressure kept.

Streams ticks (STREAM class) and acknowledges each text message on a CONTROL stream, which
overtakes the queued ticks. Run: .venv/bin/python examples/asyncio_protocol.py --port 8790
"""

from __future__ import annotations

import asyncio
import sys

import diaproto as dp

TICKS, CONTROL = 1, 2


class StreamingProtocol(asyncio.Protocol):
    def __init__(self, ticks: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.conn = dp.ServerConnection(self.loop.time())
        self.ticks, self.sent = ticks, 0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data, self.loop.time())
        self.pump()

    def eof_received(self) -> None:
        self.conn.receive_eof(self.loop.time())
        self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.receive_eof(self.loop.time())  # the core drops its streams; no more timers
        if self.timer is not None:
            self.timer.cancel()

    def pause_writing(self) -> None:  # the transport is full: the core holds the rest
        self.conn.set_transport_buffered(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self.conn.set_transport_buffered(0)
        self.pump()

    def pump(self, timer: bool = False) -> None:
        """Timers, events to the application, bytes to the transport, one timer re-armed."""
        now = self.loop.time()
        if timer:
            self.conn.handle_timer(now)
        while (event := self.conn.next_event()) is not None:
            self.handle(event, now)
        self.conn.set_transport_buffered(self.transport.get_write_buffer_size())
        if data := self.conn.data_to_send(now):
            self.transport.write(data)
        while (event := self.conn.next_event()) is not None:  # taking a batch may resume
            self.handle(event, now)
        if self.conn.finished:
            self.transport.close()
            return
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.conn.next_deadline()
        self.timer = None if deadline is None else self.loop.call_at(deadline, self.pump, True)

    def handle(self, event: object, now: float) -> None:
        """The application: everything protocol-specific stays in the core."""
        if isinstance(event, dp.WebSocketRequest):
            self.conn.accept_websocket(now=now)
            self.conn.open_stream(TICKS, now, priority=dp.Priority.STREAM, policy=dp.Policy.PAUSE)
            self.conn.open_stream(CONTROL, now, priority=dp.Priority.CONTROL)
            self.loop.call_soon(self.produce)
        elif isinstance(event, dp.WebSocketMessage):
            self.conn.send(CONTROL, f"ack {event.data!s} after {self.sent} ticks", now)
        elif isinstance(event, dp.StreamResumed):
            self.loop.call_soon(self.produce)

    def produce(self) -> None:
        """A producer that stops while the core says its stream is paused (StreamPaused)."""
        while (
            self.sent < self.ticks
            and not self.conn.finished
            and not self.conn.scheduler.is_paused(TICKS)
        ):
            self.conn.send(TICKS, b"tick %d " % self.sent + b"." * 1000, self.loop.time())
            self.sent += 1
        self.pump()


async def main(port: int, ticks: int = 2000) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StreamingProtocol(ticks), "127.0.0.1", port)
    print(f"listening on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 8790))
