"""``python -m benchmarks.gpu_dia --tiny --device cpu``: the GPU check's dry run on the CPU.

The whole check runs on the tiny random Dia in a subprocess, as it would on a GPU, and every
figure it promises is in its JSON and positive. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
PLANS = {"4:10,16:10,12": 4 + 10 + 15, "4:4,16:10,8": 4 + 4 + 15}
STEP_FIGURES = ("first_step_ms", "step_ms_median", "step_ms_p90", "steps_per_s", "x_real_time")
PLAN_FIGURES = ("first_pcm_ms", "audio_s", "wall_s", "rtf", "cancel_ms")


def positive(figures: dict[str, Any], *names: str) -> None:
    for name in names:
        value = figures[name]
        assert isinstance(value, int | float) and value > 0, (name, value)


def test_dry_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gpu_dia.json"
    command = [sys.executable, "-m", "benchmarks.gpu_dia", "--tiny", "--device", "cpu"]
    done = subprocess.run(
        [*command, "--steps", "40", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "real-time factor" in done.stdout
    data = json.loads(out.read_text())
    assert data["errors"] == {}
    assert {"torch", "transformers", "device_name"} <= data["versions"].keys()
    positive(data, "build_s", "parameters", "peak_memory_mib")
    positive(data["eager"], *STEP_FIGURES)
    decode = data["dac_decode_ms"]
    sizes = {"16", "32", "38", "34"}  # 16, 32 and each plan's K+L+R
    assert sizes <= decode.keys()
    positive(decode, *sizes)
    assert data["eager"]["plans"].keys() == PLANS.keys()
    for plan, first_steps in PLANS.items():
        figures = data["eager"]["plans"][plan]
        positive(figures, *PLAN_FIGURES)
        assert figures["first_chunk_steps"] == figures["expected_first_chunk_steps"] == first_steps
