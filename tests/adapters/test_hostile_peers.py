"""Peers that send what they must not, on every runtime: each loses only its own connection,
with the close code or status the protocol names, and the server goes on serving. An
application that raises loses only its connection too (1011)."""

from __future__ import annotations

import socket
import struct

import httpx
import pytest
from conformance_support import (
    OP_TEXT,
    Probe,
    RawWebSocket,
    healthz,
    open_fds,
    raw_http,
    rss_bytes,
    ws_connect,
)
from support import POLL_LIMIT, Echo, serving, wait_until
from websockets.exceptions import ConnectionClosed

from diaproto.config import ConnectionConfig, Limits, Timeouts
from diaproto.wire import SUBPROTOCOL


def test_application_exception_closes_only_that_connection(runtime: str) -> None:
    """An application that raises loses only that connection (1011); the server keeps
    serving the others and new ones, and calls shutdown() when it stops."""
    app = Echo()
    with serving(runtime, app) as handle, ws_connect(handle.port) as healthy:
        with ws_connect(handle.port) as doomed:
            healthy.send("one")
            assert healthy.recv(timeout=POLL_LIMIT) == "echo: one"
            doomed.send("boom")
            with pytest.raises(ConnectionClosed):
                doomed.recv(timeout=POLL_LIMIT)
            assert doomed.close_code == 1011
        healthy.send("two")
        assert healthy.recv(timeout=POLL_LIMIT) == "echo: two"
        with ws_connect(handle.port) as fresh:
            fresh.send("three")
            assert fresh.recv(timeout=POLL_LIMIT) == "echo: three"
        response = httpx.get(f"http://127.0.0.1:{handle.port}/", trust_env=False)
        assert response.status_code == 200 and response.text == "ok"
    assert app.shut_down


def test_oversized_message_closes_1009(runtime: str) -> None:
    config = ConnectionConfig(limits=Limits(max_message_bytes=1024))
    with serving(runtime, Probe(), config) as handle:
        with ws_connect(handle.port, SUBPROTOCOL) as ws:
            ws.send("x" * 2000)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=POLL_LIMIT)
            assert ws.close_code == 1009
        assert healthz(handle.port) == 200


def test_oversized_header_gets_431(runtime: str) -> None:
    config = ConnectionConfig(limits=Limits(max_header_bytes=4096))
    with serving(runtime, Probe(), config) as handle:
        big = b"x" * 8000
        answer = raw_http(handle.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
        assert healthz(handle.port) == 200


def test_invalid_utf8_text_closes_1007(runtime: str) -> None:
    with serving(runtime, Probe()) as handle, RawWebSocket(handle.port) as ws:
        ws.send_frame(OP_TEXT, b'{"type":"\xff\xfe"}')
        code, _ = ws.recv_until_close()
        assert code == 1007


def test_slowloris_is_cut_off(runtime: str) -> None:
    config = ConnectionConfig(timeouts=Timeouts(handshake=0.3))
    with serving(runtime, Probe(), config) as handle:
        answer = raw_http(handle.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:100]
        # A connection that sends nothing at all is closed too.
        silent = raw_http(handle.port, b"")
        assert silent == b"" or silent.startswith(b"HTTP/1.1 408"), silent[:100]
        assert healthz(handle.port) == 200


def test_huge_frame_header_closes_1009(runtime: str) -> None:
    """A frame that declares 2 GiB (and sends nothing more) is refused at once: 1009, and
    no memory is set aside for it."""
    probe = Probe()
    with serving(runtime, probe) as handle, RawWebSocket(handle.port, timeout=3.0) as ws:
        before = rss_bytes()
        ws.sock.sendall(struct.pack("!BBQ", 0x82, 0x80 | 127, 2**31) + b"\x01\x02\x03\x04")
        code, _ = ws.recv_until_close()
        assert code == 1009
        assert rss_bytes() - before < 64 * 1024 * 1024


def test_connect_burst_leaks_nothing(runtime: str) -> None:
    with serving(runtime, Probe()) as handle:
        assert healthz(handle.port) == 200
        wait_until(lambda: open_fds() == open_fds(), "a steady descriptor count")
        before = open_fds()
        for n in range(1000):
            with socket.create_connection(("127.0.0.1", handle.port), timeout=POLL_LIMIT) as sock:
                if n % 2:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: open_fds() <= before, "the server closed every connection")
        assert healthz(handle.port) == 200
        wait_until(lambda: open_fds() <= before, "the health check's connection closed")
