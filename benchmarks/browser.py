"""P12: the demo page in real Chromium, many pages streaming at once.

Debian's chromium (``/usr/bin/chromium``, never a downloaded browser) driven by Playwright
loads the demo page (``/``) from ``diaproto serve`` (one server per runtime, pinned to the
server core; Chromium runs beside this process on the client core), N pages at once (1 and 20),
each in its own browser context, and has each speak the same text through the page's own
speak path (``window.diaprotoSpeak``): over diaproto's WebSocket (credit at playback pace),
over SSE, and over the baseline a user would build first, a plain ``websockets`` server
sending every PCM chunk of the same synthetic source as it comes
(``benchmarks/peers/plain_pcm_websocket.py``; the page plays it as raw PCM). All the pages of a
run start at the same wall-clock instant; the promise resolves once the worklet played
everything out, and the page's ``window.diaprotoStats`` is read back.

The figures, over every page of every round (same definitions as the page's):

- **first played sample**: ``firstPlayedMs``, from the start of the page's speak to the first
  sample out of the AudioWorklet (a fresh page: the AudioContext starts inside it, as on a
  user's first click).
- **jitter**: for each chunk i >= 1, ``|(t_i - t_{i-1}) - dur_{i-1}|`` with ``t`` the page's
  ``performance.now()`` at the chunk's arrival and ``dur`` its bytes at 88,200 B/s, counted
  once the page's credit ``window`` of bytes has arrived (before that the server is filling
  the window as fast as the model goes: a burst by design). Recomputed here from the raw
  ``arrivals``; the page's own ``jitterP99Ms`` (nearest rank, one stream) must agree with
  the same percentile of the same samples (the largest gap over all pages is reported). The
  tables pool every page's samples.
- **underruns per minute of audio**: the worklet's count of blocks that ran dry mid-stream.
- **buffer high-water**: ``bufferHighMs``, the most audio the worklet held.
- **fill**: ``fillMs``, first byte to a window of bytes; **grants/s**: credit messages sent.
- **CPU**: of the whole machine (``psutil``, 100% = every core), of the server process and of
  Chromium's processes (100% = one core), over the speaking part of each run.

Levels: smoke, 1 page, a 1.6 s text, the asyncio runtime; quick, 1 and 20 pages, an 8.6 s
text, the asyncio runtime, one round; full, every runtime, two rounds. Every system has one
unmeasured run first (a page, the short text). Judged on ``diaproto-asyncio ws`` at 20 pages.
On a small machine 20 pages are CPU bound in the browser (each speaking page costs a share
of a core): the CPU figures stand beside the others, and the verdict names it.

``python -m benchmarks --only P12`` (``--smoke`` / ``--full``). Without ``/usr/bin/chromium``
or the ``playwright`` package the scenario is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped]

from benchmarks.scenarios import Level, Result, Scenario, Tick, failure, judge, p99, rotated
from benchmarks.servers import SERVER_CORE, UNBOUNDED, Server, free_port, pinning
from benchmarks.stats import Series, percentile

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

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
    # every page plays as if in front: no timer throttling of the pages not focused
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
HOST = "127.0.0.1"
RUNTIMES = ["asyncio", "anyio", "trio", "tornado", "sockets"]
TRANSPORTS = ("ws", "sse")
BASELINE = "plain websockets (baseline)"
REFERENCE_RUNTIME = "asyncio"
REFERENCE = f"diaproto-{REFERENCE_RUNTIME} ws"
BYTES_PER_MS = 88.2  # s16le 44.1 kHz mono
WINDOW = 33_516  # the page's credit window (380 ms of audio), when its stats do not say
TARGET_JITTER = 5.0  # ms, p99
TARGET_PAGES = 20
START_LIMIT = 20.0
TEXT = (
    "[S1] Streaming speech should start as soon as the first sentence is ready. "
    "[S2] The rest of the answer follows while the listener is already hearing it."
)  # 8.6 s of the synthetic voice
SHORT_TEXT = "[S1] Hello from the benchmark."  # 1.6 s: the smoke set and every warm-up

#: In the page: wait for the common start instant, speak, hand back a copy of the stats.
SPEAK_JS = """async ([options, at]) => {
  const wait = at - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  let error = null;
  try {
    await window.diaprotoSpeak(options);
  } catch (e) {
    error = String((e && e.message) || e);
  }
  const stats = JSON.parse(JSON.stringify(window.diaprotoStats || {}));
  if (error && !stats.error) stats.error = error;
  if (typeof stats.startedAt === "number") {
    stats.startedEpoch = performance.timeOrigin + stats.startedAt; // comparable across pages
  }
  return stats;
}"""
LEGACY = "the page has no window.diaprotoSpeak yet"


def system_name(runtime: str, transport: str) -> str:
    return f"diaproto-{runtime} {transport}"


def missing() -> str | None:
    """Why the scenario cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"not run: {CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401, PLC0415 (optional dependency)
    except ImportError:
        return "not run: the playwright package is not installed (pip install -e '.[dev]')"
    return None


# --- one page's figures ---------------------------------------------------------------------


def deviations(arrivals: list[list[float]], window: int) -> list[float]:
    """``|(t_i - t_{i-1}) - dur_{i-1}|`` (ms) for each chunk i >= 1 arriving once ``window``
    bytes had arrived before it."""
    out: list[float] = []
    total = 0.0
    for i, (t, nbytes) in enumerate(arrivals):
        if i >= 1 and total >= window:
            previous_t, previous_bytes = arrivals[i - 1]
            out.append(abs((t - previous_t) - previous_bytes / BYTES_PER_MS))
        total += nbytes
    return out


def nearest_rank(values: list[float], p: float) -> float:
    """The page's percentile of one stream: the ceil(p n)-th smallest value."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class PageRun:
    """What one page measured in one run."""

    stats: dict[str, Any]
    error: str | None = None

    @property
    def arrivals(self) -> list[list[float]]:
        raw = self.stats.get("arrivals") or []
        return [[float(t), float(b)] for t, b in raw]

    @property
    def window(self) -> int:
        return int(_number(self.stats.get("window")) or WINDOW)

    def jitter(self) -> list[float]:
        return deviations(self.arrivals, self.window)

    def get(self, key: str) -> float | None:
        return _number(self.stats.get(key))

    @property
    def audio_s(self) -> float:
        arrived = sum(b for _, b in self.arrivals) or (self.get("bytes") or 0.0)
        return arrived / BYTES_PER_MS / 1000

    @property
    def stream_s(self) -> float:
        """Start of the speak to the last chunk's arrival."""
        arrivals, started = self.arrivals, self.get("startedAt")
        if not arrivals or started is None:
            return 0.0
        return (arrivals[-1][0] - started) / 1000

    def disagreement(self) -> float | None:
        """|this benchmark's p99 jitter - the page's own|, ms (one page, nearest rank)."""
        ours, theirs = self.jitter(), self.get("jitterP99Ms")
        if not ours or theirs is None:
            return None
        return abs(nearest_rank(ours, 0.99) - theirs)


@dataclass
class Cpu:
    """CPU over one run's speaking part: the machine (100% = all cores), the server and
    Chromium (100% = one core), the 1-minute load average at its end, and the cores Chromium
    may run on (it inherits this process's affinity: the client core when pinned)."""

    machine: float
    server: float
    chromium: float
    load: float
    cores: int


def _chromium_times() -> dict[int, float]:
    times: dict[int, float] = {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in child.name().lower():
                cpu = child.cpu_times()
                times[child.pid] = cpu.user + cpu.system
    return times


def _own_times(pid: int) -> float:
    try:
        cpu = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(cpu.user + cpu.system)


class CpuMeter:
    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        psutil.cpu_percent(None)
        self.started = time.monotonic()
        self.server = _own_times(server_pid)
        self.chromium = _chromium_times()

    def stop(self) -> Cpu:
        wall = max(1e-6, time.monotonic() - self.started)
        machine = psutil.cpu_percent(None)
        server = (_own_times(self.pid) - self.server) / wall * 100
        now = _chromium_times()
        chromium = sum(t - self.chromium.get(pid, 0.0) for pid, t in now.items()) / wall * 100
        cores = len(os.sched_getaffinity(0))
        return Cpu(machine, server, chromium, os.getloadavg()[0], cores)


# --- servers --------------------------------------------------------------------------------


def _launch(name: str, argv: list[str], logdir: Path) -> Server:
    port = free_port()
    argv = [*argv, str(port)]
    if pinning():
        argv = ["taskset", "-c", str(SERVER_CORE), *argv]
    log = logdir / f"{name.replace(' ', '-')}-{port}.log"
    root = Path(__file__).resolve().parent.parent
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    server = Server(name, port, process, log)
    deadline = time.monotonic() + START_LIMIT
    import socket  # noqa: PLC0415

    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not start listening: {server.tail()[-300:]}")


def diaproto_argv(runtime: str) -> list[str]:
    """``diaproto serve`` with the synthetic voice; the per-client bounds lifted (every page
    shares one address); the port goes last."""
    return [sys.executable, "-m", "diaproto.apps.cli", "serve", "--runtime", runtime,
            "--host", HOST, "--log-level", "warning",
            "--max-generations-per-peer", str(UNBOUNDED),
            "--max-streams-per-connection", str(UNBOUNDED), "--port"]  # fmt: skip


@contextlib.contextmanager
def serving(runtimes: list[str]) -> Iterator[dict[str, Server]]:
    """A server per runtime (by runtime name) and the baseline (by :data:`BASELINE`)."""
    logdir = Path(tempfile.mkdtemp(prefix="diaproto-p12-"))
    servers: dict[str, Server] = {}
    try:
        for runtime in runtimes:
            servers[runtime] = _launch(f"diaproto-{runtime}", diaproto_argv(runtime), logdir)
        plain = [sys.executable, "-m", "benchmarks.peers.plain_pcm_websocket"]
        servers[BASELINE] = _launch("plain", plain, logdir)
        yield servers
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(logdir, ignore_errors=True)


# --- the browser side -----------------------------------------------------------------------


@dataclass
class Target:
    """Where a system's pages load from and how they speak."""

    page_url: str
    transport: str  # "ws" | "sse" | "plain"
    server: Server
    plain_url: str | None = None


def targets(servers: dict[str, Server], runtimes: list[str]) -> dict[str, Target]:
    out: dict[str, Target] = {}
    for runtime in runtimes:
        server = servers[runtime]
        for transport in TRANSPORTS:
            url = f"http://{HOST}:{server.port}/"
            out[system_name(runtime, transport)] = Target(url, transport, server)
    # The baseline: the same page (from the first runtime's server), fed by the plain server.
    page = f"http://{HOST}:{servers[runtimes[0]].port}/"
    plain = servers[BASELINE]
    out[BASELINE] = Target(page, "plain", plain, f"ws://{HOST}:{plain.port}/")
    return out


def _collector(seen: list[str]) -> Callable[[Any], None]:
    """A ``pageerror`` handler that keeps the page's uncaught errors in ``seen``."""
    return lambda error: seen.append(str(error))


def one_line(text: str, limit: int = 300) -> str:
    """An error as one line (the report's tables hold one line a cell)."""
    return " ".join(text.split())[:limit]


async def _load(page: Page, url: str, gate: asyncio.Semaphore) -> None:
    """Load the page (a few at a time, not measured), once more after a refused connection."""
    async with gate:
        for attempt in range(3):
            try:
                await page.goto(url, wait_until="load")
                return
            except Exception:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.5)


async def speak_pages(
    browser: Browser, target: Target, count: int, text: str, limit: float
) -> tuple[list[PageRun], Cpu]:
    """``count`` fresh pages (a context each) load, then all speak from the same instant."""
    viewport: Any = {"width": 640, "height": 520}
    contexts = [await browser.new_context(viewport=viewport) for _ in range(count)]
    try:
        pages = [await c.new_page() for c in contexts]
        errors: list[list[str]] = [[] for _ in pages]
        for page, seen in zip(pages, errors, strict=True):
            page.on("pageerror", _collector(seen))
        gate = asyncio.Semaphore(4)
        await asyncio.gather(*(_load(p, target.page_url, gate) for p in pages))
        if await pages[0].evaluate("() => typeof window.diaprotoSpeak !== 'function'"):
            raise RuntimeError(f"{LEGACY} ({target.page_url})")
        options: dict[str, Any] = {"text": text, "transport": target.transport}
        if target.plain_url is not None:
            options["plainUrl"] = target.plain_url
        at = time.time() * 1000 + 500 + 50 * count  # every page starts at this instant
        meter = CpuMeter(target.server.pid)
        calls = [p.evaluate(SPEAK_JS, [options, at]) for p in pages]
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), limit + 5)
        cpu = meter.stop()
        runs = []
        for outcome, seen in zip(outcomes, errors, strict=True):
            if isinstance(outcome, BaseException):
                runs.append(PageRun({}, one_line(f"{type(outcome).__name__}: {outcome}")))
                continue
            stats = dict(outcome)
            error = stats.get("error") or ("; ".join(seen) if seen else None)
            if stats.get("state") == "error" and not error:
                error = "the page's state is 'error'"
            runs.append(PageRun(stats, one_line(str(error)) if error else None))
        return runs, cpu
    finally:
        for c in contexts:
            with contextlib.suppress(Exception):
                await c.close()


# --- the scenario ---------------------------------------------------------------------------


@dataclass
class Collected:
    """One page count's figures, by system."""

    count: int
    jitter: dict[str, Series]
    first: dict[str, Series]
    pages: dict[str, list[PageRun]] = field(default_factory=dict)
    cpu: dict[str, list[Cpu]] = field(default_factory=dict)
    failed_pages: dict[str, list[str]] = field(default_factory=dict)
    #: per run, ms between the first and the last page's start of speaking
    spread: dict[str, list[float]] = field(default_factory=dict)
    #: the server's log when pages failed
    tails: dict[str, str] = field(default_factory=dict)


def _ok(runs: list[PageRun]) -> list[PageRun]:
    return [r for r in runs if r.error is None]


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


class BrowserPlayback(Scenario):
    id, title = "P12", "the demo page in real Chromium, 1 and 20 pages streaming at once"

    def runtimes(self, level: Level) -> list[str]:
        return list(level.pick(["asyncio"], RUNTIMES, RUNTIMES))

    def systems(self, level: Level) -> list[str]:
        names = [system_name(r, t) for r in self.runtimes(level) for t in TRANSPORTS]
        return [*names, BASELINE]

    def systems_at(self, level: Level, count: int) -> list[str]:
        """Every runtime at one page; at 20 pages the quick set runs the default runtime
        and the baseline only (20 Chromium pages take minutes a system on 2 cores)."""
        if count == TARGET_PAGES and level.name != "full":
            return [*(system_name(REFERENCE_RUNTIME, t) for t in TRANSPORTS), BASELINE]
        return self.systems(level)

    def counts(self, level: Level) -> tuple[int, ...]:
        return tuple(level.pick((1,), (1, TARGET_PAGES), (1, TARGET_PAGES)))

    def rounds(self, level: Level) -> int:
        return int(level.pick(1, 1, 2))

    def runs(self, level: Level) -> int:
        return sum(len(self.systems_at(level, n)) for n in self.counts(level)) * self.rounds(level)

    def run(self, level: Level, tick: Tick) -> list[Result]:
        why = missing()
        if why is not None:
            return [Result(self.id, self.title, "ms", False, {}, skipped=why)]
        background = psutil.cpu_percent(interval=1.0)
        text = level.pick(SHORT_TEXT, TEXT, TEXT)
        with serving(self.runtimes(level)) as servers:
            collected = asyncio.run(self._measure(level, tick, servers, text))
        results: list[Result] = []
        for c in collected:
            results += self._results(level, c, background)
        return results

    async def _measure(
        self, level: Level, tick: Tick, servers: dict[str, Server], text: str
    ) -> list[Collected]:
        from playwright.async_api import async_playwright  # noqa: PLC0415

        systems = self.systems(level)
        where = targets(servers, self.runtimes(level))
        audio_s = 10.0 if text == TEXT else 2.0
        out: list[Collected] = []
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                broken: dict[str, str] = {}
                for system in systems:  # one unmeasured run each: a page, the short text
                    try:
                        runs, _ = await speak_pages(browser, where[system], 1, SHORT_TEXT, 30)
                        if not _ok(runs):
                            raise RuntimeError(runs[0].error)
                    except Exception as exc:
                        why = failure(exc, where[system].server)
                        broken[system] = one_line(f"warm-up: {why}")
                for count in self.counts(level):
                    here = self.systems_at(level, count)
                    c = Collected(count, {s: Series(s) for s in here}, {s: Series(s) for s in here})
                    for system, why in broken.items():
                        if system in here:
                            c.jitter[system].error = c.first[system].error = why
                    limit = audio_s * 3 + 20 + count * 1.5
                    for r in range(self.rounds(level)):
                        for system in rotated(here, r):
                            if c.jitter[system].error is None:
                                await self._one(browser, where[system], system, c, text, limit)
                            tick()
                    out.append(c)
            finally:
                await browser.close()
        return out

    async def _one(  # noqa: PLR0917
        self, browser: Browser, target: Target, system: str, c: Collected, text: str, limit: float
    ) -> None:
        try:
            runs, cpu = await speak_pages(browser, target, c.count, text, limit)
        except Exception as exc:
            c.jitter[system].error = c.first[system].error = one_line(failure(exc, target.server))
            return
        c.pages.setdefault(system, []).extend(runs)
        c.cpu.setdefault(system, []).append(cpu)
        good = _ok(runs)
        c.failed_pages.setdefault(system, []).extend(r.error or "" for r in runs if r.error)
        if any(r.error for r in runs):
            c.tails[system] = one_line(target.server.tail()[-400:], 400)
        starts = [v for r in runs if (v := r.get("startedEpoch")) is not None]
        if starts:
            c.spread.setdefault(system, []).append(max(starts) - min(starts))
        if not good:
            c.jitter[system].error = c.first[system].error = f"every page failed: {runs[0].error}"
            return
        devs = [d for r in good for d in r.jitter()]
        firsts = [v for r in good if (v := r.get("firstPlayedMs")) is not None]
        if devs:
            c.jitter[system].samples.extend(devs)
            c.jitter[system].rounds.append(statistics.median(devs))
        elif c.jitter[system].error is None and not c.jitter[system].samples:
            c.jitter[system].error = "no chunk arrived after the window filled (text too short)"
        if firsts:
            c.first[system].samples.extend(firsts)
            c.first[system].rounds.append(statistics.median(firsts))
        else:
            c.first[system].error = "the page reported no firstPlayedMs"

    # --- tables ------------------------------------------------------------------------------

    def _results(self, level: Level, c: Collected, background: float) -> list[Result]:
        pages = f"{c.count} page{'s' if c.count > 1 else ''}"
        scope = (
            f"{pages} at once, each its own browser context; diaproto ws/sse and the page fed by "
            f"a plain websockets server ({BASELINE}); {self.rounds(level)} round(s)"
        )
        jitter = Result(
            f"P12-jitter-{c.count}p",
            f"Chromium: inter-arrival jitter in the page once the window is full, {scope}",
            "ms",
            False,
            c.jitter,
            reference=REFERENCE,
        )
        first = Result(
            f"P12-first-{c.count}p",
            f"Chromium: first played sample (speak to the first sample out of the worklet), "
            f"{scope}",
            "ms",
            False,
            c.first,
            reference=REFERENCE,
        )
        jitter.target = (
            f"{REFERENCE} at {pages}: jitter p99 <= {TARGET_JITTER:g} ms with credit at "
            "playback pace, 0 underruns; first played sample reported"
        )
        judge(jitter, lambda s: self._check(s, c))
        jitter.notes += [self._table(c), self._cpu_note(c, background)]
        first.notes.append(
            "Time to first byte (the page's `ttfbMs`), p50 / p99 by system: "
            + "; ".join(
                f"{s} {_fmt(_pct(t, 50), 0)} / {_fmt(_pct(t, 99), 0)} ms"
                for s, runs in c.pages.items()
                if (t := [v for r in _ok(runs) if (v := r.get("ttfbMs")) is not None])
            )
            + ". The first played sample adds the worklet's prebuffer and, on a fresh page, "
            "the AudioContext's start."
        )
        return [jitter, first]

    def _underruns(self, c: Collected, system: str) -> tuple[int, float]:
        good = _ok(c.pages.get(system, []))
        count = sum(int(r.get("underruns") or 0) for r in good)
        minutes = sum(r.audio_s for r in good) / 60
        return count, (count / minutes if minutes else float("nan"))

    def _summary(self, s: dict[str, Series], c: Collected, system: str) -> str:
        tail = p99(s, system)
        count, per_minute = self._underruns(c, system)
        first = c.first[system]
        played = f", first played p50 {first.median():.0f} ms" if first.values() else ""
        return (
            f"{system}, {c.count} page(s): jitter p99 {tail:.2f} ms, {count} underruns "
            f"({per_minute:.1f}/min){played}"
        )

    def _check(self, s: dict[str, Series], c: Collected) -> tuple[bool, str]:
        tail = p99(s, REFERENCE)
        count, _ = self._underruns(c, REFERENCE)
        verdict = self._summary(s, c, REFERENCE)
        if s.get(BASELINE) is not None and s[BASELINE].error is None and s[BASELINE].values():
            verdict += f"; {BASELINE} p99 {p99(s, BASELINE):.2f} ms"
        met = tail <= TARGET_JITTER and count == 0
        if not met:
            verdict += "; in the way: " + self._obstacles(c, REFERENCE, tail, count)
        return met, verdict

    def _obstacles(self, c: Collected, system: str, tail: float, underruns: int) -> str:
        """What keeps ``system`` from the target, from its own figures."""
        reasons = []
        if tail > TARGET_JITTER:
            early = late = 0
            for r in _ok(c.pages.get(system, [])):
                arrivals, total = r.arrivals, 0.0
                for i, (t, nbytes) in enumerate(arrivals):
                    if i >= 1 and total >= r.window:
                        gap = t - arrivals[i - 1][0]
                        due = arrivals[i - 1][1] / BYTES_PER_MS
                        if abs(gap - due) > TARGET_JITTER:
                            early += gap < due
                            late += gap > due
                    total += nbytes
            over = early + late
            if over:
                reasons.append(
                    f"{early / over:.0%} of the chunks off by more than {TARGET_JITTER:g} ms came "
                    f"early (bunched: several chunks in one read or one grant), {late / over:.0%} "
                    "late (a gap longer than the chunk: the sender or the page was held up)"
                )
        if underruns:
            stalls = [
                max((b[0] - a[0] for a, b in itertools.pairwise(r.arrivals)), default=0.0)
                for r in _ok(c.pages.get(system, []))
            ]
            window_ms = max((r.window for r in _ok(c.pages.get(system, []))), default=0)
            reasons.append(
                f"{underruns} underruns: the worklet ran dry (longest wait between two chunks "
                f"{max(stalls, default=0.0):.0f} ms against a window of "
                f"{window_ms / BYTES_PER_MS:.0f} ms of audio; credit comes back only when the "
                "page's main thread runs)"
            )
        cpus = c.cpu.get(system, [])
        if cpus:
            machine = statistics.median(x.machine for x in cpus)
            chromium = statistics.median(x.chromium for x in cpus)
            cores = cpus[-1].cores
            if machine >= 85 or chromium >= 85 * cores:
                reasons.append(
                    f"the client was CPU bound (Chromium {chromium:.0f}% of a core on the "
                    f"{cores} core(s) it may use, {chromium / c.count:.0f}% a page; the machine "
                    f"{machine:.0f}% busy): the figures are the browser's starvation as much as "
                    "the server's"
                )
        return "; ".join(reasons) or "nothing measured explains it"

    def _table(self, c: Collected) -> str:
        rows = [
            "| system | pages ok | first played p50 / p99 (ms) | jitter p50 / p99 (ms, "
            "benchmark) | page's own jitter p99, median (largest gap to ours) | underruns / min "
            "| buffer high-water max (ms) | fill p50 (ms) | grants/s | audio per page (s) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        largest = 0.0
        for system in c.jitter:
            runs = c.pages.get(system, [])
            good = _ok(runs)
            if not runs:
                continue
            devs = [d for r in good for d in r.jitter()]
            firsts = [v for r in good if (v := r.get("firstPlayedMs")) is not None]
            page_p99 = [v for r in good if (v := r.get("jitterP99Ms")) is not None]
            gaps = [g for r in good if (g := r.disagreement()) is not None]
            largest = max([largest, *gaps])
            highs = [v for r in good if (v := r.get("bufferHighMs")) is not None]
            fills = [v for r in good if (v := r.get("fillMs")) is not None]
            grants = [v for r in good if (v := r.get("grants")) is not None]
            stream_s = sum(r.stream_s for r in good)
            _, per_minute = self._underruns(c, system)
            audio = [r.audio_s for r in good]
            rows.append(
                f"| {system} | {len(good)}/{len(runs)} "
                f"| {_fmt(_pct(firsts, 50), 0)} / {_fmt(_pct(firsts, 99), 0)} "
                f"| {_fmt(_pct(devs, 50), 2)} / {_fmt(_pct(devs, 99), 2)} "
                f"| {_fmt(statistics.median(page_p99) if page_p99 else None, 2)} "
                f"({_fmt(max(gaps) if gaps else None, 3)}) "
                f"| {_fmt(per_minute, 2)} | {_fmt(max(highs) if highs else None, 0)} "
                f"| {_fmt(_pct(fills, 50), 0)} "
                f"| {_fmt(sum(grants) / stream_s if grants and stream_s else None, 1)} "
                f"| {_fmt(statistics.median(audio) if audio else None, 2)} |"
            )
        failures = {s: f for s, f in c.failed_pages.items() if f}
        text = "\n".join(rows)
        text += (
            f"\n\nAgreement: the page's own `jitterP99Ms` against the p99 recomputed here from "
            f"its raw `arrivals`, page by page: largest gap {largest:.3f} ms."
        )
        if failures:
            text += " Pages that failed: " + "; ".join(
                f"{s}: {len(f)} ({f[0][:120]}; the server's log: {c.tails.get(s) or 'nothing'!r})"
                for s, f in failures.items()
            )
        spreads = [x for xs in c.spread.values() for x in xs]
        if c.count > 1 and spreads:
            text += (
                f" The pages of a run started speaking within {max(spreads):.0f} ms of each "
                "other (the largest spread of any run)."
            )
        return text

    def _cpu_note(self, c: Collected, background: float) -> str:
        shown = "; ".join(
            f"{system} machine {statistics.median(x.machine for x in cpus):.0f}%, server "
            f"{statistics.median(x.server for x in cpus):.0f}%, Chromium "
            f"{statistics.median(x.chromium for x in cpus):.0f}% on {cpus[-1].cores} core(s) "
            f"({statistics.median(x.chromium for x in cpus) / c.count:.0f}% a page), load "
            f"{cpus[-1].load:.1f}"
            for system, cpus in c.cpu.items()
            if cpus
        )
        return (
            f"CPU while the pages spoke (median of rounds; machine: 100% = all "
            f"{psutil.cpu_count()} cores; server and Chromium: 100% = one core; load: 1-minute "
            f"load average at the end): {shown or 'none measured'}. Busy before the scenario "
            f"started (other work on the machine): {background:.0f}%. Chromium runs where this "
            "process may (the client core when pinned), the servers on the server core; the "
            "load average counts Chromium's own threads too."
        )
