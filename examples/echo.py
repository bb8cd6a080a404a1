"""A WebSocket echo server on the diaproto core, for every runtime adapter.

    python examples/echo.py --runtime asyncio|trio|tornado|sockets --port 9001 [--host 127.0.0.1]

It accepts any WebSocket upgrade (the first subprotocol offered, or none; permessage-deflate
when the client offers it) and sends every message back as it came: text as text, binary as
binary. Any plain HTTP request gets 404. The limits are sized for the Autobahn test suite
(``tests/interop/test_autobahn.py`` runs it against this application on each adapter):
messages up to 16 MiB, and an outbound budget that never pauses the echo.

One application, written once against :mod:`diaproto.runtime`, runs unchanged on each adapter.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from types import ModuleType

from diaproto.config import ConnectionConfig, Limits, SchedulerConfig, Timeouts
from diaproto.events import Event, Request, SseRequest, WebSocketMessage, WebSocketRequest
from diaproto.runtime import Application, Session
from diaproto.scheduler import Priority
from diaproto.wire import SUBPROTOCOL

RUNTIMES = ("asyncio", "trio", "tornado", "sockets")
ECHO_STREAM = 0
MIB = 1024 * 1024

#: Autobahn's largest messages are 16 MiB (cases 9.x); its 1000-message cases (9.7, 9.8) and a
#: 16 MiB message echoed back must all fit without pausing the echo, which cannot pause its peer.
ECHO_CONFIG = ConnectionConfig(
    limits=Limits(max_message_bytes=16 * MIB),
    timeouts=Timeouts(idle=60.0),
    scheduler=SchedulerConfig(
        max_buffered=64 * MIB,
        high_watermark=48 * MIB,
        low_watermark=16 * MIB,
        batch_bytes=256 * 1024,
        write_window=256 * 1024,
    ),
)


class EchoApp:
    """The :class:`diaproto.runtime.Application` that echoes every WebSocket message."""

    def __init__(self, *, compress: bool = True) -> None:
        self.compress = compress

    def handle_event(self, session: Session, event: Event) -> None:
        conn = session.conn
        now = session.runtime.now()
        if isinstance(event, WebSocketRequest):
            # diaproto.v1 frames messages as its wire protocol: echoing is not that protocol.
            offered = [p for p in event.subprotocols if p != SUBPROTOCOL]
            conn.accept_websocket(offered[0] if offered else None, now=now, compress=self.compress)
            # INTERACTIVE: an echo answers one message at a time, so nothing lingers for company.
            limit = conn.config.scheduler.max_buffered
            conn.open_stream(ECHO_STREAM, now, priority=Priority.INTERACTIVE, limit=limit)
        elif isinstance(event, WebSocketMessage):
            conn.send(ECHO_STREAM, event.data, now)
        elif isinstance(event, (Request, SseRequest)):
            body = b"not found: this server echoes WebSocket messages\n"
            headers = (("content-type", "text/plain; charset=utf-8"),)
            conn.respond(404, headers, body, now=now)
        # Everything else (pauses, stream ends, closes, peer errors) needs no answer.

    def shutdown(self) -> None:
        """Nothing runs in the background: the adapter closes the connections."""


def adapter(runtime: str) -> tuple[ModuleType, dict[str, object]]:
    """The adapter module serving ``runtime`` and the extra arguments its functions take."""
    if runtime == "trio":
        return importlib.import_module("diaproto.adapters.anyio"), {"backend": runtime}
    if runtime in ("asyncio", "tornado", "sockets"):
        return importlib.import_module(f"diaproto.adapters.{runtime}"), {}
    msg = f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}"
    raise ValueError(msg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="WebSocket echo server on the diaproto core")
    parser.add_argument("--runtime", choices=RUNTIMES, default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument(
        "--no-compress", action="store_true", help="decline permessage-deflate offers"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module, options = adapter(args.runtime)
    app: Application = EchoApp(compress=not args.no_compress)

    def ready(host: str, port: int) -> None:
        print(f"echo ({args.runtime}) listening on ws://{host}:{port}/", flush=True)

    run: Callable[..., None] = module.run
    run(app, args.host, args.port, config=ECHO_CONFIG, ready=ready, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
