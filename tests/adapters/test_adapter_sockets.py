"""The raw-socket adapter (socket + selectors), driven by real clients over 127.0.0.1.

What every runtime must do (streams, fifty SSE streams at once, shutdown with 1001,
backpressure, timeouts, descriptor leaks, workers, the command line) is in the conformance
suite of tests/adapters; this file keeps what is particular to this adapter: the timer heap (a
connection's handshake deadline closes it; call_later runs, or not once cancelled).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from support import POLL_LIMIT, Echo, serving, wait_until

from diaproto.adapters._threaded import ThreadedServer
from diaproto.adapters.sockets import Server
from diaproto.config import ConnectionConfig, Timeouts
from diaproto.runtime import Application


@contextmanager
def serving_sockets(
    app: Application, config: ConnectionConfig | None = None
) -> Iterator[ThreadedServer[Server]]:
    """``support.serving`` on the sockets adapter, with its server object at hand."""
    with serving("sockets", app, config) as handle:
        assert isinstance(handle, ThreadedServer)
        yield cast("ThreadedServer[Server]", handle)


def test_the_timer_heap_drives_the_cores_deadlines() -> None:
    # A silent connection meets the handshake timeout; only the loop's timers can end it.
    config = ConnectionConfig(timeouts=Timeouts(handshake=0.2))
    with (
        serving_sockets(Echo(), config) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=POLL_LIMIT) as sock,
    ):
        assert sock.recv(1) == b""  # closed by the server
        runtime, fired = server.server.runtime, list[bool]()

        def arm() -> None:  # on the loop: the cancelled timer was due first
            runtime.call_later(0.01, lambda: fired.append(False)).cancel()
            runtime.call_later(0.05, lambda: fired.append(True))

        server.call(arm)
        wait_until(lambda: server.call(lambda: bool(fired)), "call_later ran")
        assert server.call(lambda: fired) == [True]
