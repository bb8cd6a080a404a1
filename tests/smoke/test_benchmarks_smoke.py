"""The benchmark suite runs end to end at its smallest scale (``--smoke``).

No timing is asserted: only that every scenario produced positive figures for diaproto and
for its peers, and that the JSON results, the plots and the page were written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("psutil")
pytest.importorskip("matplotlib")
pytest.importorskip("picows")

from benchmarks.cli import ALL, run

#: P12 (Chromium) has its own smoke test (test_bench_browser.py), which skips loudly
#: without a browser; it is not run twice.
NOT_HERE = {"P12"}


def test_every_scenario_produces_figures(tmp_path: Path) -> None:
    only = ",".join(s.id for s in ALL if s.id not in NOT_HERE)
    results, page = run(["--smoke", "--no-progress", "--only", only, "--out", str(tmp_path)])
    ids = {r.id for r in results}
    assert {"P1-32B", "P1-4KiB", "P2", "P3", "P4", "P5-bounded", "P6"} <= ids
    assert {"P7-jitter", "P7-rss", "P8", "P9", "P10-ttfa", "P10-rtf"} <= ids
    assert {"P11-hop", "P11-ingest", "P11-fanout"} <= ids
    for result in results:
        assert result.skipped is None or result.id == "P9", (result.id, result.skipped)
        assert result.series, result.id
        figures = {name: s.median() for name, s in result.series.items() if s.error is None}
        failed = {name: s.error for name, s in result.series.items() if s.error is not None}
        assert not failed, (result.id, failed)
        positive = result.id == "P7-rss" or all(v > 0 for v in figures.values())
        assert positive, (result.id, figures)
    data = json.loads((tmp_path / "benchmarks" / "results.json").read_text())
    assert {t["id"] for t in data["results"]} == ids
    assert data["machine"]["cores"] >= 1
    text = page.read_text()
    assert "## P1-32B" in text and "| diaproto-asyncio vs it |" in text
    assert (tmp_path / "benchmarks" / "p1-32b.png").stat().st_size > 0
