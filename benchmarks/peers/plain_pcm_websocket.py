"""P12's baseline: the PCM WebSocket server a user would build with the ``websockets`` library.

Per connection: one text message ``{"text": ..., "voice": ..., "speed": ...}`` (JSON) in, then
every chunk of the same :class:`SyntheticSource` the diaproto server speaks with by default
(1024-byte chunks of s16le 44.1 kHz mono, paced 2.5x faster than real time, 150 ms to the
first chunk) out as one binary message each, sent as it comes, then a close with code 1000.
No credit, no priority, no buffering policy: the way a first WebSocket TTS endpoint looks.

The generator sleeps between chunks (it stands in for a model), so it runs on a thread and
hands each chunk to the event loop as it is made. Compression is off (the same frames go on
the wire as from diaproto; PCM barely compresses); any Origin is accepted (the demo page is
loaded from the diaproto server and connects here across ports).

``python -m benchmarks.peers.plain_pcm_websocket PORT [HOST]``: serve until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from diaproto.apps.serve.sources import SyntheticSource

_END = None


def _produce(
    request: dict[str, Any],
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[bytes | BaseException | None],
    stop: threading.Event,
) -> None:
    """Run the paced source on this thread; every chunk goes to ``queue`` as it is made."""
    try:
        source = SyntheticSource()
        chunks = source.generate(
            str(request["text"]),
            str(request.get("voice") or "S1"),
            float(request.get("speed") or 1.0),
        )
        for chunk in chunks:
            if stop.is_set():
                chunks.close()
                break
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
        loop.call_soon_threadsafe(queue.put_nowait, _END)
    except Exception as exc:  # a bad request: the handler closes with the reason
        with contextlib.suppress(RuntimeError):  # the loop is gone
            loop.call_soon_threadsafe(queue.put_nowait, exc)


async def handler(ws: ServerConnection) -> None:
    try:
        message = await ws.recv()
        request = json.loads(message)
        if not isinstance(request, dict) or not isinstance(request.get("text"), str):
            raise ValueError("expected {text, voice?, speed?}")
    except ConnectionClosed:
        return
    except ValueError as exc:
        await ws.close(1003, str(exc)[:100])
        return
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
    stop = threading.Event()
    worker = threading.Thread(target=_produce, args=(request, loop, queue, stop), daemon=True)
    worker.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                await ws.close(1000)
                return
            if isinstance(item, BaseException):
                await ws.close(1011, str(item)[:100])
                return
            assert isinstance(item, bytes)
            await ws.send(item)
    except ConnectionClosed:
        return
    finally:
        stop.set()


async def main(port: int, host: str = "127.0.0.1") -> None:
    async with ws_serve(handler, host, port, compression=None) as server:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.close)
        await server.wait_closed()


def serve(port: int, host: str = "127.0.0.1") -> None:
    # websockets' warnings and errors (a failed handshake, a handler that raised): the
    # benchmark shows the log's tail beside any page that failed.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(main(port, host))


if __name__ == "__main__":
    serve(int(sys.argv[1]), *sys.argv[2:3])
