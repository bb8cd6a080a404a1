"""P1's limits here: a plain asyncio ``Protocol`` that answers the WebSocket handshake and
writes pre-framed messages, with no WebSocket library and no per-message framing.

- ``raw-write``: one ``transport.write`` per message (the frame is built once): asyncio's own
  cost per write, the floor of any server that writes each message as it is sent.
- ``raw-batch``: :data:`CHUNK` frames joined once and written together: no per-message work at
  all, only the loop, the kernel and the client's reading (the wire's ceiling here).

Only ``/push?n=N&size=S`` is served; writes go in callbacks of :data:`CHUNK` messages (as
diaproto's benchmark application queues them) and stop while the transport says
``pause_writing``, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

from . import route

CHUNK = 2048
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes) -> bytes:
    """One unmasked binary frame (payloads under 64 KiB)."""
    size = len(payload)
    if size < 126:
        return bytes((0x82, size)) + payload
    return bytes((0x82, 126)) + size.to_bytes(2, "big") + payload


class RawPush(asyncio.Protocol):
    def __init__(self, batched: bool) -> None:
        self.batched = batched
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.left = 0
        self.message = b""
        self.chunk = b""
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.message or self.transport is None:
            return  # after the handshake the client sends nothing we need
        self.buffer += data
        head, found, _ = self.buffer.partition(b"\r\n\r\n")
        if not found:
            return
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1].decode()
        headers = dict(line.split(b": ", 1) for line in lines[1:] if b": " in line)
        key = headers.get(b"Sec-WebSocket-Key") or headers.get(b"sec-websocket-key", b"")
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())  # RFC 6455
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        kind, params = route(target)
        if kind != "push":
            self.transport.close()
            return
        self.left = int(params.get("n", 1000))
        self.message = frame(bytes(int(params.get("size", 32))))
        self.chunk = self.message * CHUNK
        asyncio.get_running_loop().call_soon(self.produce)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.produce()

    def produce(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        count = min(CHUNK, self.left)
        if self.batched:
            transport.write(self.chunk if count == CHUNK else self.message * count)
        else:
            write, message = transport.write, self.message
            for _ in range(count):
                write(message)
        self.left -= count
        if self.left > 0 and not self.paused:
            asyncio.get_running_loop().call_soon(self.produce)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def main(port: int, batched: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RawPush(batched), "127.0.0.1", port)
    await server.serve_forever()


def serve(port: int, *, batched: bool = False) -> None:
    asyncio.run(main(port, batched))
