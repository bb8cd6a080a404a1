"""A plain asyncio Protocol echoing bytes: the loopback round trip that P3 is judged against."""

from __future__ import annotations

import asyncio


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    await server.serve_forever()


def serve(port: int) -> None:
    asyncio.run(main(port))
