"""The demo page in a real browser (Debian's chromium, driven by Playwright) against the server.

Starts ``python -m diaproto.apps.cli serve`` on a free port, loads ``/``, speaks a sentence
over the WebSocket transport and then over SSE, and checks that PCM reached the AudioWorklet
and that the page shows a time to first byte. Leaves a screenshot in /tmp/diaproto-page.png.

Without /usr/bin/chromium (or the ``playwright`` package) the test is skipped loudly; under
``CI=true`` it fails instead. It never downloads a browser.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/diaproto-page.png")
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
SENTENCE = "[S1] Hello from the browser test. [S2] This audio streams as it is generated."


def _missing(what: str) -> NoReturn:
    """Skip loudly, or fail under CI=true."""
    message = f"BROWSER TEST NOT RUN: {what}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    print(f"\n*** {message} ***", file=sys.stderr)
    warnings.warn(message, pytest.PytestWarning, stacklevel=2)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def server() -> Iterator[str]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "diaproto.apps.cli", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while not _healthy(base):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    pytest.fail(f"the server did not become healthy:\n{output}")
                time.sleep(0.1)
            yield base
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


def _speak(page: Any, transport: str) -> dict[str, Any]:
    """Press Speak with the given transport; wait until audio reached the worklet."""
    page.select_option("#transport", transport)
    page.click("#speak")
    page.wait_for_function(
        """() => {
            const s = window.diaprotoStats;
            const ttfb = document.getElementById("ttfb").textContent;
            return (s && s.framesToWorklet > 0 && /^[0-9]+(\\.[0-9]+)?$/.test(ttfb))
                || (s && s.state === "error");
        }""",
        timeout=15_000,
    )
    stats: dict[str, Any] = page.evaluate("() => ({...window.diaprotoStats})")
    stats["ttfbText"] = page.text_content("#ttfb")
    return stats


def test_page_speaks_over_websocket_and_sse(server: str) -> None:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} IS MISSING (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional dependency)
    except ImportError:
        _missing("THE PLAYWRIGHT PACKAGE IS NOT INSTALLED (pip install -e '.[dev]')")

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,  # the fresh profile dir becomes --user-data-dir
            viewport={"width": 1100, "height": 860},
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server + "/", wait_until="load")
            assert page.title().startswith("diaproto")
            page.fill("#text", SENTENCE)

            ws = _speak(page, "ws")
            assert ws["state"] != "error", ws
            assert ws["transport"] == "ws"
            assert ws["framesToWorklet"] > 0
            assert ws["chunks"] > 0
            assert ws["ttfbMs"] is not None and ws["ttfbMs"] >= 0
            assert float(ws["ttfbText"]) >= 0

            if page.is_enabled("#stop"):  # still streaming: exercise Stop (cancel)
                page.click("#stop")
                assert page.evaluate("() => window.diaprotoStats.state") == "stopped"
            sse = _speak(page, "sse")
            assert sse["state"] != "error", sse
            assert sse["transport"] == "sse"
            assert sse["framesToWorklet"] > 0
            assert sse["ttfbMs"] is not None and sse["ttfbMs"] >= 0
            assert float(sse["ttfbText"]) >= 0

            # Let the stream run a little so the chart and the jitter have something to show.
            page.wait_for_function("() => window.diaprotoStats.chunks >= 200", timeout=15_000)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            final = page.evaluate("() => ({...window.diaprotoStats})")
            print(f"\nwebsocket: {ws}\nsse: {sse}\nat screenshot: {final}", file=sys.stderr)
            assert errors == [], errors
        finally:
            browser.close()
