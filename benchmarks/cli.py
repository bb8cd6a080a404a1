"""``python -m benchmarks [--full] [--only P1,P2] [--out DIR]``: run, then write the report."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from tqdm import tqdm  # type: ignore[import-untyped]

from benchmarks import report
from benchmarks.browser import BrowserPlayback
from benchmarks.dia_stream import DiaFirstAudio
from benchmarks.scale_out import ScaleOut
from benchmarks.scenarios import SCENARIOS, Level, Result, Scenario, safe_run
from benchmarks.servers import pin_client, pinning

ROOT = Path(__file__).resolve().parent.parent
ALL: list[Scenario] = [*SCENARIOS, DiaFirstAudio(), ScaleOut(), BrowserPlayback()]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the long set (1,000 clients, ...)")
    size.add_argument("--smoke", action="store_true", help="about a second per scenario")
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. P1,P3")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where docs go")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> tuple[list[Result], Path]:
    args = parse(argv)
    level = Level("full" if args.full else "smoke" if args.smoke else "quick")
    wanted = {x.strip().upper() for x in args.only.split(",") if x.strip()}
    scenarios = [s for s in ALL if not wanted or s.id in wanted]
    if wanted and not scenarios:
        raise SystemExit(f"no scenario among {sorted(wanted)}; ids: P1..P12")
    pin_client()
    started = time.monotonic()
    results: list[Result] = []
    total = sum(s.runs(level) for s in scenarios)
    with tqdm(total=total, unit="run", disable=args.no_progress, file=sys.stderr) as bar:
        for scenario in scenarios:
            bar.set_description(f"{scenario.id} {scenario.title[:40]}")
            results += safe_run(scenario, level, lambda: bar.update(1))
    shown = ["python", "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])]
    meta = report.meta(level.name, shlex.join(shown), pinning(), time.monotonic() - started)
    page = report.write(results, meta, args.out)
    return results, page


def main(argv: list[str] | None = None) -> int:
    results, page = run(argv)
    for r in results:
        line = f"{r.id:10} {r.skipped or r.verdict or ''}"
        if r.met is not None:
            line += f"  [{'met' if r.met else 'MISSED'}]"
        print(line)
    print(f"wrote {page} and {page.with_suffix('') / 'results.json'}")
    return 0
