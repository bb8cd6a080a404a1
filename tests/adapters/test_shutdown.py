"""Server shutdown on every runtime.

An open SSE response ends properly: a final ``error`` event with code ``going_away``, the
chunked body's terminating chunk, then the connection closes (issue 12, defect 6). A bare EOF
would leave the client unable to tell a shutdown from a network failure, and the body
truncated. A client that neither reads nor answers is dropped after the close timeout, and
the application still hears the end."""

from __future__ import annotations

import json
import socket
import threading
from urllib.parse import quote

import h11
from conformance_support import (
    RecordingService,
    a_stream_paused,
    long_text,
    open_and_stop_reading,
)
from support import POLL_LIMIT, STOP_LIMIT, fast_source, start, wait_until

from diaproto.apps.serve.app import DiaService
from diaproto.config import ConnectionConfig, Timeouts
from diaproto.sse import SseParser
from diaproto.wire import ErrorCode

LONG_TEXT = " ".join(f"Sentence number {n} is here to make the stream last." for n in range(40))


def test_shutdown_ends_sse_with_going_away_and_the_last_chunk(runtime: str) -> None:
    handle = start(runtime, RecordingService())
    stopper: threading.Thread | None = None
    try:
        with socket.create_connection(("127.0.0.1", handle.port), timeout=POLL_LIMIT) as sock:
            sock.sendall(
                f"GET /v1/stream?text={quote(LONG_TEXT)} HTTP/1.1\r\nHost: x\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            client = h11.Connection(h11.CLIENT)
            client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
            parser = SseParser()
            events: list[tuple[str, str]] = []
            ended = False
            while not ended:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    # A bare EOF before the terminating chunk makes h11 raise here.
                    client.receive_data(sock.recv(65536))
                elif isinstance(event, h11.Response):
                    assert event.status_code == 200
                elif isinstance(event, h11.Data):
                    parser.feed(bytes(event.data))
                    while (message := parser.next_event()) is not None:
                        events.append((message.event, message.data))
                        if message.event == "data" and stopper is None:
                            # Audio is flowing: stop the server (it waits for us to read).
                            stopper = threading.Thread(target=handle.stop, args=(POLL_LIMIT,))
                            stopper.start()
                elif isinstance(event, h11.EndOfMessage):
                    ended = True
            # Then the server closes the connection.
            while True:
                try:
                    if not sock.recv(65536):
                        break
                except ConnectionResetError:
                    break
        assert stopper is not None, "no audio arrived"
        last_event, last_data = events[-1]
        assert last_event == "error", events[-3:]
        body = json.loads(last_data)
        assert body["code"] == ErrorCode.GOING_AWAY
        assert body["stream"] is None
    finally:
        if stopper is not None:
            stopper.join(POLL_LIMIT * 2)
        handle.stop(POLL_LIMIT)


def test_shutdown_drops_a_client_that_neither_reads_nor_answers(runtime_or_uvloop: str) -> None:
    # The transport is full and the close frame can never go out: after the close timeout
    # (+1 s) the adapter drops the transport; the application still hears the end.
    service = DiaService(fast_source())
    config = ConnectionConfig(timeouts=Timeouts(close_timeout=0.5))
    server = start(runtime_or_uvloop, service, config)
    sock, _client = open_and_stop_reading(server.port, long_text(30))
    with sock:
        wait_until(lambda: a_stream_paused(server, service), "the stream pauses")
        assert server.stop(STOP_LIMIT), "the server thread did not end"
        assert service._sessions == {}  # ConnectionClosed reached the application
        assert all(generation.stopped for generation in service.generations.live.values())
