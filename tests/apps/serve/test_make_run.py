"""The `make run` smoke test: the real command line, as a subprocess, stopped with SIGINT.

`make run` runs `.venv/bin/diaproto serve --model synthetic`; the console script calls
`diaproto.apps.cli:main`, which is what `python -m diaproto.apps.cli` runs here.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

STARTUP_LIMIT = 20.0
EXIT_LIMIT = 15.0
URL = re.compile(r"serving on (http://127\.0\.0\.1:(\d+)/)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert isinstance(port, int)
        return port


def read_until_url(
    process: subprocess.Popen[bytes], port: int, limit: float = STARTUP_LIMIT
) -> tuple[str, str]:
    """(the URL it printed, everything printed so far); bounded by ``limit`` seconds."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    output = b""
    deadline = time.monotonic() + limit
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(deadline - time.monotonic(), 0.01)):
                continue
            data = os.read(fd, 65536)  # unbuffered: nothing can hide in a reader's buffer
            if not data:
                break  # it exited
            output += data
            match = URL.search(output.decode(errors="replace"))
            if match:
                assert int(match.group(2)) == port
                return match.group(1), output.decode(errors="replace")
    raise AssertionError(f"no URL printed within {limit} s: {output!r}")


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_make_run_smoke(runtime: str) -> None:
    port = free_port()
    command = [sys.executable, "-m", "diaproto.apps.cli", "serve", "--port", str(port)]
    if runtime != "asyncio":
        command += ["--runtime", runtime]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        url, output = read_until_url(process, port)
        assert f"runtime {runtime}" in output
        with httpx.Client(trust_env=False, timeout=10) as client:
            page = client.get(url)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert ">Speak</button>" in page.text
            health = client.get(url + "healthz")
            assert health.status_code == 200
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=EXIT_LIMIT)
        output += rest.decode(errors="replace")
        assert process.returncode == 0, output
        assert "diaproto: stopped" in output
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=EXIT_LIMIT)
