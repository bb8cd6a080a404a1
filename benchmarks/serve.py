"""``python -m benchmarks.serve SYSTEM PORT``: run one system's server until SIGTERM."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any


def cap_send_buffers(nbytes: int) -> None:
    """Give every accepted socket an ``SO_SNDBUF`` of ``nbytes`` (no kernel autotuning).

    Applied the same way to every system that accepts through Python's ``socket.accept``
    (asyncio, trio, tornado, raw sockets; not uvloop, whose accept is in C).
    """
    original = socket.socket.accept

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        sock, address = original(self)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
        return sock, address

    socket.socket.accept = accept  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    system, port = argv[0], int(argv[1])
    if os.environ.get("BENCH_SNDBUF"):
        cap_send_buffers(int(os.environ["BENCH_SNDBUF"]))
    if system.startswith("diaproto-") and system not in ("diaproto-protocol", "diaproto-mcp"):
        from benchmarks.peers import diaproto_app  # noqa: PLC0415

        diaproto_app.serve(port, system.removeprefix("diaproto-"))
    elif system in ("raw-write", "raw-batch"):
        from benchmarks.peers import raw_write  # noqa: PLC0415

        raw_write.serve(port, batched=system == "raw-batch")
    elif system.startswith("uvicorn-"):
        from benchmarks.peers import uvicorn_peer  # noqa: PLC0415

        ws = {"uvicorn-wsproto": "wsproto", "uvicorn-wssansio": "websockets-sansio"}[system]
        uvicorn_peer.serve(port, ws)
    else:
        module = {
            "websockets": "websockets_peer",
            "aiohttp": "aiohttp_peer",
            "tornado": "tornado_peer",
            "picows": "picows_peer",
            "sse-starlette": "sse_starlette_peer",
            "h11": "h11_peer",
            "asyncio-echo": "asyncio_echo",
            "mcp-sdk": "mcp_peer",
            "diaproto-protocol": "diaproto_protocol",
            "diaproto-mcp": "diaproto_mcp",
        }[system]
        import importlib  # noqa: PLC0415

        importlib.import_module(f"benchmarks.peers.{module}").serve(port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
