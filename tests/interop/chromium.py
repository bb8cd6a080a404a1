"""How the browser tests launch Debian's chromium (through Playwright; never a downloaded
browser): headless, no sandbox (containers), no GPU, nothing fetched in the background, and
audio allowed to start without a click."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
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
