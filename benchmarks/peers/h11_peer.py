"""A minimal h11 SSE server on an asyncio Protocol: one ``h11.Data`` per event, written as
soon as it is made, stopping while the transport says ``pause_writing``."""

from __future__ import annotations

import asyncio

import h11

from . import route

CHUNK = 2048


class SseProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.left = 0
        self.event = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.h11.receive_data(data)
        event = self.h11.next_event()
        if isinstance(event, h11.Request):
            _, params = route(event.target.decode())
            headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
            self.transport.write(self.h11.send(h11.Response(status_code=200, headers=headers)))
            self.left = int(params.get("n", 1000))
            self.event = b"data: " + b"x" * int(params.get("size", 32)) + b"\n\n"
            self.produce()

    def produce(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        n = min(self.left, CHUNK)
        while n and not self.paused:
            transport.write(self.h11.send(h11.Data(data=self.event)))
            n -= 1
            self.left -= 1
        if self.left == 0:
            transport.write(self.h11.send(h11.EndOfMessage()) or b"")
            transport.close()
        elif not self.paused:
            asyncio.get_running_loop().call_soon(self.produce)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.produce()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SseProtocol, "127.0.0.1", port)
    await server.serve_forever()


def serve(port: int) -> None:
    asyncio.run(main(port))
