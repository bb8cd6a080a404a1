"""A server's life on every runtime: ``diaproto serve --runtime <name>`` serves until SIGINT
and exits 0; a server stopped through its handle has told the application, no longer
accepts, and its handle says the loop is gone instead of hanging."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from support import POLL_LIMIT, STOP_LIMIT, Echo, start, wait_for

START_LIMIT = 20.0  # seconds a fresh interpreter may take to import and listen


def serve_on_the_command_line(options: list[str]) -> str:
    """``diaproto serve`` with ``options``: /healthz answered, then SIGINT; its output."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "diaproto.apps.cli", "serve", *options]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    try:
        url = f"http://127.0.0.1:{port}/healthz"

        def answer() -> httpx.Response | None:
            assert process.poll() is None, "the server exited before it answered"
            try:
                return httpx.get(url, trust_env=False, timeout=POLL_LIMIT)
            except httpx.ConnectError:
                return None

        health = wait_for(answer, "the server answered /healthz", START_LIMIT)
        assert health.status_code == 200 and health.text == "ok\n"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=STOP_LIMIT)
        text = output.decode(errors="replace")
        assert process.returncode == 0, text
        assert "diaproto: stopped" in text and "Traceback" not in text
        return text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_command_line_serves_and_exits_on_sigint(runtime_or_uvloop: str) -> None:
    name, _, loop = runtime_or_uvloop.partition("+")
    options = ["--runtime", name, *(["--uvloop"] if loop else [])]
    output = serve_on_the_command_line(options)
    assert f"runtime {runtime_or_uvloop}" in output  # as the command line shows it


def test_after_stop_the_handle_says_the_loop_is_gone(runtime_or_uvloop: str) -> None:
    # Shutdown itself (1001 to a WebSocket mid-stream) is in test_conformance; this is the
    # handle's side, which each adapter implements on its own loop.
    app = Echo()
    server = start(runtime_or_uvloop, app)
    assert server.stop(STOP_LIMIT), "the server thread did not end"
    assert app.shut_down
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", trust_env=False)
    with pytest.raises(RuntimeError):
        server.call(lambda: None)  # the loop is gone: say so instead of hanging
