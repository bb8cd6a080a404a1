"""``python -m benchmarks.send_path [--systems diaproto,aiohttp,websockets] [--rounds 4]
[--tree PATH]``

Where P3's microseconds go on the server: from the application's stamp (taken just before
its send) to the moment the bytes reach asyncio's socket transport, and the transport's
write itself (the system call; on loopback the kernel delivers to the reader inside it).
Measured inside each server process, by wrapping ``_SelectorSocketTransport.write`` and
``writelines``, on the P3 load (400 ticks of 64 B every 5 ms, twice per round); the client
is P3's. Rounds alternate between systems; the server is pinned to core 0, this process to
core 1. ``--tree`` serves diaproto from another checkout (an older commit's worktree) as
``diaproto@tree``, for a before/after in one run. picows writes from Cython outside
asyncio's transport, so it cannot be measured this way.

Prints a Markdown table: per system, the median over rounds of each round's median.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import clients

ROOT = Path(__file__).resolve().parents[1]

# Runs in the server process: the probe, then the server. argv: system, port, result file.
PROBE = r"""
import os, signal, struct, sys, time
from asyncio import selector_events
STAMP = struct.Struct("!Q")
before, during = [], []
cls = selector_events._SelectorSocketTransport
write, writelines = cls.write, cls.writelines

def record(head, t0, t1):
    # A binary frame of a 64 B payload: two header bytes, then the stamp.
    if len(head) >= 10 and head[0] == 0x82:
        stamp = STAMP.unpack_from(head, 2)[0]
        if 0 < t0 - stamp < 10**8:
            before.append(t0 - stamp)
            during.append(t1 - t0)

def probed_write(self, data):
    t0 = time.monotonic_ns(); head = bytes(data[:12]); write(self, data)
    record(head, t0, time.monotonic_ns())

def probed_writelines(self, lines):
    t0 = time.monotonic_ns(); head = b"".join(bytes(x) for x in lines)[:12]
    writelines(self, lines); record(head, t0, time.monotonic_ns())

cls.write, cls.writelines = probed_write, probed_writelines

def report(*_):
    with open(sys.argv[3], "w") as out:
        out.write(" ".join(map(str, before)) + "\n" + " ".join(map(str, during)) + "\n")
    os._exit(0)

signal.signal(signal.SIGUSR1, report)
system, port = sys.argv[1], int(sys.argv[2])
if system == "diaproto":
    import diaproto  # from the tree asked for, not wherever it is installed
    assert diaproto.__file__.startswith(os.getcwd()), diaproto.__file__
    from benchmarks.peers import diaproto_app
    diaproto_app.serve(port, "asyncio")
else:
    import importlib
    importlib.import_module(f"benchmarks.peers.{system}_peer").serve(port)
"""


def wait_for(port: int, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def one_round(system: str, tree: Path, port: int) -> tuple[float, float]:
    """Medians (us) of stamp -> write and of the write, over one server's ticks."""
    name = system.partition("@")[0]
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as result:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = ["taskset", "-c", "0", sys.executable, "-c", PROBE, name, str(port), result.name]
        server = subprocess.Popen(command, cwd=tree, env=env)
        try:
            wait_for(port)
            clients.tick_latencies(port, 10, 0.005, 64)  # warm-up, not recorded apart
            for _ in range(2):
                clients.tick_latencies(port, 400, 0.005, 64)
            server.send_signal(signal.SIGUSR1)
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        lines = result.read().splitlines()
    before, during = ([int(x) / 1000 for x in line.split()] for line in lines)
    return statistics.median(before), statistics.median(during)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.send_path", description=__doc__)
    parser.add_argument("--systems", default="diaproto,aiohttp,websockets")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tree", type=Path, help="another checkout, served as diaproto@tree")
    args = parser.parse_args(argv)
    systems = {name: ROOT for name in args.systems.split(",") if name}
    if args.tree is not None:
        systems["diaproto@tree"] = args.tree.resolve()
    os.sched_setaffinity(0, {1})
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in systems}
    port = 18700
    for _ in range(args.rounds):
        for name, tree in systems.items():
            port += 1
            figures[name].append(one_round(name, tree, port))
            time.sleep(0.2)
    print("| system | stamp -> write (us) | the write (us) | rounds |")
    print("|---|---|---|---|")
    for name, rounds in figures.items():
        before = statistics.median(r[0] for r in rounds)
        during = statistics.median(r[1] for r in rounds)
        print(f"| {name} | {before:.1f} | {during:.1f} | {len(rounds)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
