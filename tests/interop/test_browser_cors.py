"""A web app on another origin calls the speech API from a real browser (Debian's chromium).

Chromium resolves ``app.example`` and ``evil.example`` to 127.0.0.1 (``--host-resolver-rules``)
so that their pages are other origins than the API's. The service allows
``http://app.example:<port>`` (``--allow-origin``) and requires an API key: the page at
app.example makes the preflight and the POST a browser makes with OpenAI's JavaScript client
and reads the MP3; the page at evil.example is refused, and its script sees a network error.

Without /usr/bin/chromium (or the ``playwright`` package) the test is skipped loudly; under
``CI=true`` it fails instead. It never downloads a browser.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS
from server_fixture import RunningServer, running_server
from test_browser import _missing

from diaproto.mcp import McpHttpConfig
from diaproto.mcp.http import LOOPBACK_HOSTS

API_KEY = "sk-browser-test"
CALL = """async ([url, key]) => {
    try {
        const response = await fetch(url, {
            method: "POST",
            headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json",
                      "X-Stainless-Lang": "js"},
            body: JSON.stringify({model: "tts-1", voice: "alloy", input: "Hello from a page."}),
        });
        const body = new Uint8Array(await response.arrayBuffer());
        return {status: response.status, type: response.headers.get("content-type"),
                bytes: body.length, head: Array.from(body.slice(0, 2))};
    } catch (error) {
        return {error: String(error)};
    }
}"""


class _BlankPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>an app</title>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output stays the test's


@pytest.fixture
def page_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BlankPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def api(page_server: int) -> Iterator[RunningServer]:
    allowed = (f"http://app.example:{page_server}",)
    config = McpHttpConfig(allowed_hosts=LOOPBACK_HOSTS, allowed_origins=allowed)
    with running_server(mcp_config=config, api_keys=(API_KEY,)) as running:
        yield running


def test_an_allowed_page_reads_the_speech_and_another_is_refused(
    api: RunningServer, page_server: int
) -> None:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} IS MISSING (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional dependency)
    except ImportError:
        _missing("THE PLAYWRIGHT PACKAGE IS NOT INSTALLED (pip install -e '.[dev]')")
    rules = "--host-resolver-rules=MAP app.example 127.0.0.1, MAP evil.example 127.0.0.1"
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, rules]
        )
        try:
            page = browser.new_page()
            url = api.url + "/v1/audio/speech"
            page.goto(f"http://app.example:{page_server}/", wait_until="load")
            allowed = page.evaluate(CALL, [url, API_KEY])
            assert allowed.get("status") == 200, allowed
            assert allowed["type"] == "audio/mpeg"
            assert allowed["bytes"] > 1000
            assert allowed["head"][0] == 0xFF and allowed["head"][1] & 0xE0 == 0xE0  # MP3 sync
            wrong_key = page.evaluate(CALL, [url, "not-the-key"])
            assert wrong_key.get("status") == 401, wrong_key  # readable: the page learns why
            page.goto(f"http://evil.example:{page_server}/", wait_until="load")
            refused = page.evaluate(CALL, [url, API_KEY])
            assert "error" in refused, refused  # the browser hides the 403 from the script
        finally:
            browser.close()
