"""The demo page in a real browser (Debian's chromium, driven by Playwright) against the server.

Starts ``python -m diaproto.apps.cli serve`` on a free port, loads ``/``, speaks a sentence
over the WebSocket transport (the Speak button), stops one stream midway, then speaks over SSE
and over the plain baseline (``window.diaprotoSpeak``; a small raw-PCM WebSocket server here).
After each stream has played out it checks the listener's figures in ``window.diaprotoStats``
against one another and against what the page shows. No timing bounds: the machine may be
loaded. Leaves a screenshot in /tmp/diaproto-page.png.

Without /usr/bin/chromium (or the ``playwright`` package) the test is skipped loudly; under
``CI=true`` it fails instead. It never downloads a browser.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS
from support import not_run

SCREENSHOT = Path("/tmp/diaproto-page.png")
ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "[S1] Hello from the browser test. [S2] This audio streams as it is generated."


def _missing(what: str) -> NoReturn:
    not_run(f"BROWSER TEST NOT RUN: {what}")


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


PLAIN_CHUNK = 1024  # bytes of s16le 44.1 kHz mono: 11.6 ms of audio
PLAIN_CHUNKS = 130  # ~1.5 s of audio
BYTES_PER_SECOND = 88_200


class PlainServer:
    """The plain baseline's server: one text request, then raw PCM messages, then close 1000."""

    def __init__(self) -> None:
        from websockets.sync.server import serve  # noqa: PLC0415 (a dev dependency)

        self.requests: list[dict[str, Any]] = []
        self.sent = 0
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, connection: Any) -> None:
        self.requests.append(json.loads(connection.recv(timeout=10)))
        for i in range(PLAIN_CHUNKS):
            frames = PLAIN_CHUNK // 2
            pcm = bytearray()
            for k in range(frames):  # a quiet 220 Hz tone
                value = int(3000 * math.sin(2 * math.pi * 220 * (i * frames + k) / 44_100))
                pcm += value.to_bytes(2, "little", signed=True)
            connection.send(bytes(pcm))
            self.sent += len(pcm)
            time.sleep(PLAIN_CHUNK / BYTES_PER_SECOND / 2.5)  # 2.5 times real time, like the voice
        connection.close(1000)

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def _speak_and_wait(page: Any, options: dict[str, Any]) -> str:
    """``window.diaprotoSpeak(options)``; wait until it settles; 'played' or 'error: ...'."""
    page.evaluate(
        """(options) => {
            window.__outcome = undefined;
            window.diaprotoSpeak(options).then(
                () => { window.__outcome = "played"; },
                (error) => { window.__outcome = `error: ${error.message}`; });
        }""",
        options,
    )
    page.wait_for_function("() => window.__outcome !== undefined", timeout=60_000)
    outcome: str = page.evaluate("() => window.__outcome")
    return outcome


SNAPSHOT = """() => {
    const text = (id) => document.getElementById(id).textContent;
    return {
        stats: JSON.parse(JSON.stringify(window.diaprotoStats)),
        shown: {
            firstPlayedMs: text("first-played"), ttfbMs: text("ttfb"),
            jitterP50Ms: text("jitter-p50"), jitterP99Ms: text("jitter-p99"),
            underruns: text("underruns"), bufferMs: text("buffer"),
            bufferHighMs: text("buffer-high"), chunks: text("chunks"),
        },
    };
}"""


NONE_SHOWN = "\u2013"  # an en dash


def _shown_matches(shown: str, value: float | None) -> bool:
    """The page shows an en dash for none, one decimal below 10, whole numbers above."""
    if value is None:
        return shown == NONE_SHOWN
    return abs(float(shown) - value) <= 0.5 + 1e-9


def _check_played(page: Any, transport: str) -> dict[str, Any]:
    """The figures of a stream that has played out, checked against one another and the page."""
    snapshot = page.evaluate(SNAPSHOT)
    stats: dict[str, Any] = snapshot["stats"]
    shown: dict[str, str] = snapshot["shown"]
    summary = {k: v for k, v in stats.items() if k != "arrivals"}
    assert stats["state"] == "done" and stats["error"] is None, summary
    assert stats["played"] is True, summary
    assert stats["transport"] == transport
    assert isinstance(stats["startedAt"], (int, float))

    arrivals = stats["arrivals"]
    assert stats["bytes"] > 0 and stats["chunks"] > 0, summary
    assert len(arrivals) == stats["chunks"], summary
    assert sum(size for _, size in arrivals) == stats["bytes"], summary
    times = [t for t, _ in arrivals]
    assert times == sorted(times), "arrival times go forward"
    assert stats["framesToWorklet"] > 0

    ttfb, first_played = stats["ttfbMs"], stats["firstPlayedMs"]
    assert isinstance(ttfb, (int, float)) and ttfb >= 0, summary
    assert math.isclose(times[0] - stats["startedAt"], ttfb, abs_tol=1e-6), summary
    assert isinstance(first_played, (int, float)) and math.isfinite(first_played), summary
    assert first_played >= ttfb, f"audio played before it arrived: {summary}"

    assert isinstance(stats["underruns"], int) and stats["underruns"] >= 0, summary
    assert isinstance(stats["bufferHighMs"], (int, float)) and stats["bufferHighMs"] > 0, summary
    if transport == "ws":
        assert stats["grants"] > 0, summary
    else:
        assert stats["grants"] == 0, summary

    # Jitter counts only after the first window of bytes (the fill); p50 <= p99.
    window = stats["window"]
    if stats["bytes"] - arrivals[-1][1] >= window:
        assert isinstance(stats["fillMs"], (int, float)) and stats["fillMs"] >= 0, summary
        p50, p99 = stats["jitterP50Ms"], stats["jitterP99Ms"]
        assert isinstance(p50, (int, float)) and isinstance(p99, (int, float)), summary
        assert 0 <= p50 <= p99, summary
    else:
        assert stats["jitterP50Ms"] is None and stats["jitterP99Ms"] is None, summary

    # What the page shows is what diaprotoStats says.
    figures = ("firstPlayedMs", "ttfbMs", "jitterP50Ms", "jitterP99Ms", "bufferMs", "bufferHighMs")
    for name in figures:
        assert _shown_matches(shown[name], stats[name]), (name, shown[name], stats[name])
    assert shown["underruns"] == str(stats["underruns"])
    assert shown["chunks"] == str(stats["chunks"])
    print(f"\n{transport}: {summary}", file=sys.stderr)
    return stats


def test_page_speaks_over_websocket_sse_and_plain(server: str) -> None:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} IS MISSING (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional dependency)
    except ImportError:
        _missing("THE PLAYWRIGHT PACKAGE IS NOT INSTALLED (pip install -e '.[dev]')")

    plain = PlainServer()
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,  # the fresh profile dir becomes --user-data-dir
            viewport={"width": 1100, "height": 900},
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server + "/", wait_until="load")
            assert page.title().startswith("diaproto")

            # WebSocket, through the Speak button.
            page.fill("#text", SENTENCE)
            page.select_option("#transport", "ws")
            page.click("#speak")
            page.wait_for_function(
                "() => window.diaprotoStats.played || window.diaprotoStats.state === 'error'",
                timeout=60_000,
            )
            ws = _check_played(page, "ws")

            # Stop midway: the stream is cancelled and the pending speak rejects.
            page.evaluate(
                """(text) => {
                    window.__outcome = undefined;
                    window.diaprotoSpeak({ text, transport: "ws" }).then(
                        () => { window.__outcome = "played"; },
                        (error) => { window.__outcome = `error: ${error.message}`; });
                }""",
                SENTENCE,
            )
            page.wait_for_function(
                "() => window.diaprotoStats.chunks >= 10 || window.diaprotoStats.state === 'error'",
                timeout=30_000,
            )
            assert page.evaluate("() => window.diaprotoStats.error") is None
            page.click("#stop")
            page.wait_for_function("() => window.__outcome !== undefined", timeout=30_000)
            assert page.evaluate("() => window.__outcome") == "error: stopped"
            assert page.evaluate("() => window.diaprotoStats.state") == "stopped"

            sse_options = {"text": SENTENCE, "transport": "sse", "voice": "S2"}
            sse_outcome = _speak_and_wait(page, sse_options)
            assert sse_outcome == "played", sse_outcome
            sse = _check_played(page, "sse")

            plain_url = f"ws://127.0.0.1:{plain.port}/"
            plain_options = {"text": "plain baseline", "transport": "plain", "speed": 1.25}
            plain_outcome = _speak_and_wait(page, {**plain_options, "plainUrl": plain_url})
            assert plain_outcome == "played", plain_outcome
            baseline = _check_played(page, "plain")
            assert plain.requests == [{"text": "plain baseline", "voice": "S1", "speed": 1.25}]
            assert baseline["bytes"] == plain.sent == PLAIN_CHUNK * PLAIN_CHUNKS

            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert ws["bytes"] > 0 and sse["bytes"] > 0
            assert errors == [], errors
        finally:
            browser.close()
            plain.close()
