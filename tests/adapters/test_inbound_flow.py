"""Inbound flow control on every runtime: once the core holds its bound of a peer's unread
bytes (``max_buffered_inbound``) it stops asking for data, and the adapter stops reading, so
the rest stays in the kernel and the peer is held back by TCP (what tornado's own WebSocket
code lacks, tornado #2341)."""

from __future__ import annotations

import socket

from conformance_support import OFFERED, long_text, pipeline_until_refused
from support import POLL_LIMIT, fast_source, serving, wait_until

from diaproto.apps.serve.app import DiaService
from diaproto.config import ConnectionConfig, Limits


def test_a_peer_that_pipelines_without_end_is_no_longer_read(runtime: str) -> None:
    # An SSE stream is being answered; every byte after its request is held by the core,
    # which asks (wants_data) to stop reading at max_buffered_inbound.
    config = ConnectionConfig(limits=Limits(max_buffered_inbound=256 * 1024))
    service = DiaService(fast_source())
    with (
        serving(runtime, service, config) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=POLL_LIMIT) as sock,
    ):
        target = "/v1/stream?text=" + long_text(30).replace(" ", "%20")
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        wait_until(lambda: server.call(lambda: bool(service._sessions)), "the stream starts")
        # Kernel buffers on both sides take some megabytes; the rest is refused.
        assert pipeline_until_refused(sock) < OFFERED // 2

        def not_reading() -> bool:
            (session,) = service._sessions
            return not session.conn.wants_data

        assert server.call(not_reading)
