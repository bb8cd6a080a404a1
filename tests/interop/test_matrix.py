"""The interop matrix: the Dia service on every runtime against clients nobody here wrote.

Clients: ``websockets`` and ``websocket-client`` on /ws; ``httpx-sse`` on /v1/stream; Node's
``ws`` and ``eventsource`` packages (tests/interop/node, installed here with npm); Chromium's
own ``WebSocket`` and ``EventSource`` (Debian's /usr/bin/chromium through Playwright, on the
service's ``/`` page so the requests are same-origin). Every WebSocket client streams to the
end (sequence numbers 1..n, the exact audio); every SSE client has its connection dropped by
the server mid-stream, resumes with Last-Event-ID, and must end with nothing lost and nothing
repeated.

Without node or chromium the affected cells are skipped loudly; under CI=true they fail.
``DIAPROTO_WRITE_INTEROP=1`` writes the resulting table to docs/interop.md.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import websocket
from chromium import CHROMIUM, CHROMIUM_ARGS
from httpx_sse import connect_sse
from support import not_run
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from diaproto import adapters
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.limits import MAX_SSE_LEAD, ServiceLimits
from diaproto.apps.serve.sources import SyntheticSource
from diaproto.apps.serve.text import split_sentences
from diaproto.config import ConnectionConfig
from diaproto.runtime import ServerHandle, Session

ROOT = Path(__file__).resolve().parent.parent.parent
NODE_DIR = Path(__file__).resolve().parent / "node"
RUNTIMES = ("asyncio", "anyio", "trio", "tornado", "sockets")
TEXT = "Hello there. This is a short test of streaming speech. It goes on for a while."
POLL_LIMIT = 20.0
DROP_AFTER = 3  # the server drops an SSE stream once it has sent this many records
CONFIG = ConnectionConfig(sse_retry_ms=100)  # EventSource clients come back quickly

RESULTS: dict[tuple[str, str], str] = {}


# --- server -------------------------------------------------------------------------------


def start(runtime: str, service: DiaService) -> ServerHandle:
    return adapters.start_in_thread(runtime, service, "127.0.0.1", 0, CONFIG)


def new_service() -> DiaService:
    # Made at 4x real time: a stream lasts about a second, long enough to drop it; SSE with
    # the longest lead, so that it is not then held to real time (pacing has its own tests).
    return DiaService(
        SyntheticSource(real_time_factor=0.25, first_chunk_latency=0.01),
        limits=ServiceLimits(sse_lead=MAX_SSE_LEAD),
    )


def expected_audio(text: str = TEXT) -> bytes:
    source = SyntheticSource(real_time_factor=0, first_chunk_latency=0)
    return b"".join(c for s in split_sentences(text) for c in source.generate(s, "S1", 1.0))


class SseDropper:
    """Drops the service's SSE connection once, after DROP_AFTER records went out."""

    def __init__(self, handle: ServerHandle, service: DiaService) -> None:
        self.handle, self.service = handle, service
        self.dropped = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _find_and_close(self) -> bool:
        sessions: list[Session] = list(self.service._sessions)
        for session in sessions:
            conn = session.conn
            if conn.scheduler.has_stream(1) and conn.scheduler.last_seq(1) >= DROP_AFTER:
                conn.close(session.runtime.now())
                session.wake()
                return True
        return False

    def _run(self) -> None:
        deadline = time.monotonic() + POLL_LIMIT
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if self.handle.call(self._find_and_close):
                    self.dropped.set()
                    return
            except RuntimeError:
                return  # the server is gone
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(POLL_LIMIT)


def check_stream(seqs: list[int], audio: bytes, end_seq: int | None) -> None:
    assert seqs == list(range(1, len(seqs) + 1)), f"not 1..n: {seqs[:20]}..."
    assert end_seq == len(seqs), (end_seq, len(seqs))
    assert audio == expected_audio(), "the audio differs from an uninterrupted stream"


def check_sse(events: list[tuple[str, str]], end: dict[str, Any] | None) -> None:
    # Ids are <epoch>.<seq>: one epoch for the whole stream, across every reconnect.
    epochs = {event_id.partition(".")[0] for event_id, _ in events}
    assert len(epochs) <= 1, f"the stream changed history: {sorted(epochs)}"
    seqs = [int(event_id.partition(".")[2]) for event_id, _ in events]
    audio = b"".join(base64.b64decode(data) for _, data in events)
    check_stream(seqs, audio, end["seq"] if end else None)


def missing(what: str) -> NoReturn:
    not_run(f"INTEROP CELL NOT RUN: {what}")


# --- clients ------------------------------------------------------------------------------


def ws_records(message: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(message):
        _, seq, length = struct.unpack_from("!III", message, offset)
        out.append((seq, message[offset + 12 : offset + 12 + length]))
        offset += 12 + length
    return out


def client_websockets(handle: ServerHandle, _service: DiaService) -> None:
    url = f"ws://127.0.0.1:{handle.port}/ws"
    seqs: list[int] = []
    audio = bytearray()
    end: dict[str, Any] | None = None
    subprotocols = [Subprotocol("diaproto.v1")]
    with connect(url, subprotocols=subprotocols, proxy=None, open_timeout=POLL_LIMIT) as ws:
        assert ws.subprotocol == "diaproto.v1"
        ws.send(json.dumps({"type": "open", "stream": 1, "text": TEXT}))
        while end is None:
            message = ws.recv(timeout=POLL_LIMIT)
            if isinstance(message, str):
                control = json.loads(message)
                assert control["type"] != "error", control
                end = control if control["type"] == "end" else None
                continue
            for seq, payload in ws_records(message):
                seqs.append(seq)
                audio += payload
    check_stream(seqs, bytes(audio), end["seq"])


def client_websocket_client(handle: ServerHandle, _service: DiaService) -> None:
    url = f"ws://127.0.0.1:{handle.port}/ws"
    ws = websocket.create_connection(url, subprotocols=["diaproto.v1"], timeout=POLL_LIMIT)
    seqs: list[int] = []
    audio = bytearray()
    end: dict[str, Any] | None = None
    try:
        assert ws.getsubprotocol() == "diaproto.v1"
        ws.send(json.dumps({"type": "open", "stream": 1, "text": TEXT}))
        while end is None:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_TEXT:
                control = json.loads(data)
                assert control["type"] != "error", control
                end = control if control["type"] == "end" else None
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                for seq, payload in ws_records(data):
                    seqs.append(seq)
                    audio += payload
    finally:
        ws.close()
    check_stream(seqs, bytes(audio), end["seq"])


def client_httpx_sse(handle: ServerHandle, service: DiaService) -> None:
    events: list[tuple[str, str]] = []
    end: dict[str, Any] | None = None
    params = {"text": TEXT, "id": "httpx-sse"}
    dropper = SseDropper(handle, service)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{handle.port}", trust_env=False, timeout=POLL_LIMIT
        ) as client:
            for _ in range(5):  # bounded reconnects
                headers = {"Last-Event-ID": events[-1][0]} if events else {}
                with connect_sse(client, "GET", "/v1/stream", params=params, headers=headers) as s:
                    try:
                        for event in s.iter_sse():
                            assert event.event != "error", event.data
                            if event.event == "data":
                                events.append((event.id, event.data))
                            elif event.event == "end":
                                end = json.loads(event.data)
                                break
                    except httpx.RemoteProtocolError:
                        pass  # the server dropped us mid-event: resume
                if end is not None:
                    break
        assert dropper.dropped.is_set(), "the server never dropped the stream"
    finally:
        dropper.stop()
    check_sse(events, end)


def node_script(script: str, *args: str) -> dict[str, Any]:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        missing("node/npm not found")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        command = [npm, "ci" if (NODE_DIR / "package-lock.json").exists() else "install"]
        subprocess.run(
            [*command, "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    done = subprocess.run(
        [node, str(NODE_DIR / script), *args],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["errors"], result["errors"]
    return result


def client_node_ws(handle: ServerHandle, _service: DiaService) -> None:
    result = node_script("ws_client.mjs", f"ws://127.0.0.1:{handle.port}/ws", TEXT)
    assert result["subprotocol"] == "diaproto.v1"
    records = result["records"]
    seqs = [seq for seq, _ in records]
    audio = b"".join(base64.b64decode(data) for _, data in records)
    check_stream(seqs, audio, result["end"]["seq"])


def sse_url(handle: ServerHandle, client_id: str) -> str:
    query = httpx.QueryParams({"text": TEXT, "id": client_id})
    return f"http://127.0.0.1:{handle.port}/v1/stream?{query}"


def client_node_eventsource(handle: ServerHandle, service: DiaService) -> None:
    dropper = SseDropper(handle, service)
    try:
        result = node_script("sse_client.mjs", sse_url(handle, "node-eventsource"))
        assert dropper.dropped.is_set(), "the server never dropped the stream"
    finally:
        dropper.stop()
    assert result["reconnects"] >= 1
    check_sse([(i, d) for i, d in result["events"]], result["end"])


BROWSER_WS = """async ([url, text]) => {
  const ws = new WebSocket(url, ["diaproto.v1"]);
  ws.binaryType = "arraybuffer";
  const records = [];
  return await new Promise((resolve) => {
    const timer = setTimeout(() => resolve({error: "timeout", records}), 20000);
    ws.onopen = () => ws.send(JSON.stringify({type: "open", stream: 1, text}));
    ws.onerror = () => { clearTimeout(timer); resolve({error: "websocket error", records}); };
    ws.onmessage = (m) => {
      if (typeof m.data === "string") {
        const c = JSON.parse(m.data);
        if (c.type === "error" || c.type === "end") {
          clearTimeout(timer); ws.close();
          resolve({control: c, protocol: ws.protocol, records});
        }
        return;
      }
      const view = new DataView(m.data);
      for (let o = 0; o < view.byteLength;) {
        const seq = view.getUint32(o + 4), len = view.getUint32(o + 8);
        const bytes = new Uint8Array(m.data, o + 12, len);
        let bin = ""; for (const b of bytes) bin += String.fromCharCode(b);
        records.push([seq, btoa(bin)]);
        o += 12 + len;
      }
    };
  });
}"""

BROWSER_SSE = """async (url) => {
  const source = new EventSource(url);
  const events = [];
  let reconnects = 0;
  return await new Promise((resolve) => {
    const timer = setTimeout(() => { source.close(); resolve({error: "timeout", events}); }, 30000);
    source.addEventListener("data", (e) => events.push([e.lastEventId, e.data]));
    source.addEventListener("end", (e) => {
      clearTimeout(timer); source.close();
      resolve({end: JSON.parse(e.data), events, reconnects});
    });
    source.addEventListener("error", (e) => {
      if (e.data) { clearTimeout(timer); source.close(); resolve({error: e.data, events}); }
      else reconnects += 1;
    });
  });
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        yield None
        return
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        yield None
        return
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def in_page(browser: Any, handle: ServerHandle, script: str, argument: object) -> Any:
    if browser is None:
        missing(f"{CHROMIUM} or the playwright package is missing")
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{handle.port}/", timeout=POLL_LIMIT * 1000)
        return page.evaluate(script, argument)
    finally:
        page.close()


def client_chromium_websocket(handle: ServerHandle, _service: DiaService, browser: Any) -> None:
    url = f"ws://127.0.0.1:{handle.port}/ws"
    result = in_page(browser, handle, BROWSER_WS, [url, TEXT])
    assert "error" not in result, result.get("error")
    assert result["protocol"] == "diaproto.v1"
    assert result["control"]["type"] == "end", result["control"]
    seqs = [seq for seq, _ in result["records"]]
    audio = b"".join(base64.b64decode(data) for _, data in result["records"])
    check_stream(seqs, audio, result["control"]["seq"])


def client_chromium_eventsource(handle: ServerHandle, service: DiaService, browser: Any) -> None:
    if browser is None:
        missing(f"{CHROMIUM} or the playwright package is missing")
    dropper = SseDropper(handle, service)
    try:
        result = in_page(browser, handle, BROWSER_SSE, sse_url(handle, "chromium-eventsource"))
        assert dropper.dropped.is_set(), "the server never dropped the stream"
    finally:
        dropper.stop()
    assert "error" not in result, result.get("error")
    assert result["reconnects"] >= 1
    check_sse([(i, d) for i, d in result["events"]], result["end"])


PlainClient = Callable[[ServerHandle, DiaService], None]
CLIENTS: dict[str, PlainClient] = {
    "websockets (Python)": client_websockets,
    "websocket-client (Python)": client_websocket_client,
    "httpx-sse (Python), resume": client_httpx_sse,
    "ws (Node)": client_node_ws,
    "eventsource (Node), resume": client_node_eventsource,
}
BROWSER_CLIENTS = {
    "Chromium WebSocket": client_chromium_websocket,
    "Chromium EventSource, resume": client_chromium_eventsource,
}
ALL_CLIENTS = [*CLIENTS, *BROWSER_CLIENTS]


@pytest.fixture(scope="module", autouse=True)
def interop_table() -> Iterator[None]:
    yield
    if os.environ.get("DIAPROTO_WRITE_INTEROP") == "1" and RESULTS:
        write_table()


def write_table() -> None:
    lines = [
        "# Interop matrix",
        "",
        "The Dia service on each runtime against independent clients, as run by",
        "`DIAPROTO_WRITE_INTEROP=1 pytest tests/interop/test_matrix.py` (regenerate it that way).",
        "WebSocket clients stream one request to its end (sequence numbers 1..n, the exact",
        "audio); SSE clients have their connection dropped by the server mid-stream and resume",
        "with Last-Event-ID: nothing lost, nothing repeated.",
        "",
        "| client | " + " | ".join(RUNTIMES) + " |",
        "|---|" + "---|" * len(RUNTIMES),
    ]
    for client in ALL_CLIENTS:
        cells = [RESULTS.get((client, runtime), "not run") for runtime in RUNTIMES]
        lines.append(f"| {client} | " + " | ".join(cells) + " |")
    (ROOT / "docs" / "interop.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("client", ALL_CLIENTS)
def test_interop(client: str, runtime: str, browser: Any) -> None:
    RESULTS[(client, runtime)] = "skipped"
    service = new_service()
    handle = start(runtime, service)
    try:
        if client in CLIENTS:
            CLIENTS[client](handle, service)
        else:
            BROWSER_CLIENTS[client](handle, service, browser)
    except pytest.skip.Exception:
        raise
    except BaseException as exc:
        RESULTS[(client, runtime)] = f"FAIL ({type(exc).__name__})"
        raise
    finally:
        assert handle.stop(POLL_LIMIT), "the server did not stop"
    RESULTS[(client, runtime)] = "pass"
