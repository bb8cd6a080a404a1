"""The full-size Dia on one GPU: is streaming it faster than real time, and by how much?

``python -m benchmarks.gpu_dia [--device cuda] [--tiny] [--compile] [--steps N] [--json PATH]``

Builds Dia-1.6B's geometry and the DAC 44 kHz codec with seeded random weights on the device
(:func:`diaproto.apps.serve.sources.dia.random_weights.full_size_dia`: no download; random
weights change no shape, so no timing) and prints one table, in this order:

* model build time, parameter count;
* eager generation: the time of each step, taken from a streamer's ``put`` calls (transformers
  copies each step's tokens to the host, which waits for the device), over ``--steps`` steps
  less a few warm-up ones, with Dia's sampling settings (CFG 3.0, temperature 1.8, top-p 0.90,
  top-k 45) and EOS suppressed so the length is known: median and p90 in ms, steps/s, and
  times real time (Dia makes 86.13 frames of audio a second: a step must take < 11.61 ms);
* DAC decode time of windows of 16 and 32 frames and of each plan's windows (first K0+R0,
  then K+L+R frames), codes to float audio on the device;
* through :class:`~diaproto.apps.serve.sources.dia.model.TransformersDiaSource`, for the plans
  ``4:10,16:10,12`` (the default, exact) and ``4:4,16:10,8``: first-PCM latency (wall time from
  ``generate()`` to the first chunk, and the step it left at: K0+R0+15), real-time factor
  (wall seconds per audio second over a ``--steps``-step text: < 1 is faster than real time)
  and cancel latency (how long the source generator's ``close()`` takes after the first
  chunk: the model stops within a step);
* with ``--compile``: the same step timing with ``cache_implementation="static"``, for which
  transformers ``torch.compile``s the forward on CUDA (``GenerationMixin.
  _valid_auto_compile_criteria`` and ``get_compiled_call``, mode ``reduce-overhead``), the
  compile and warm-up call timed apart from the steady steps; then the source runs again with
  the static cache if ``--budget-s`` allows;
* peak memory: ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on the CPU.

``--tiny --device cpu`` runs the same code on the tiny random model (:func:`tiny_dia`) as a
dry run in seconds (tests/smoke/test_gpu_dia_dry_run.py). ``--json PATH`` writes every figure (after
each section, so a run cut short still leaves what it measured). A section that fails is
reported and the run goes on; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from diaproto.apps.serve.sources.dia.frames import Window, WindowPlan
from diaproto.apps.serve.sources.dia.model import DTYPES, ChunkReady, TransformersDiaSource
from diaproto.apps.serve.sources.dia.random_weights import full_size_dia, tiny_dia

TEXT = "[S1] Streaming speech from Dia, one frame at a time, so the first audio leaves early."
PLANS = ("4:10,16:10,12", "4:4,16:10,8")
FRAME_RATE = 44100 / 512  # 86.13 audio frames a second: one per generation step
SAMPLING: dict[str, object] = {
    "guidance_scale": 3.0,
    "temperature": 1.8,
    "top_p": 0.90,
    "top_k": 45,
    "do_sample": True,
}
WARMUP_STEPS = 5  # left out of the step statistics (allocator, kernels' first launches)
COMPILE_WARMUP_STEPS = 12  # the compile call: compile, then CUDA graph warm-up and recording
DAC_SIZES = (16, 32)
DAC_REPEATS = 10
MIN_STEPS = 40  # every plan's first chunk (at most 29 steps) and some more


@dataclass
class Bench:
    """The model under test and every figure measured so far."""

    args: argparse.Namespace
    device: torch.device
    dtype: torch.dtype
    model: Any = None
    processor: Any = None
    figures: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def eos(self) -> int:
        return int(self.model.config.decoder_config.eos_token_id)

    def options(self, *, static: bool = False) -> dict[str, object]:
        """generate() options: Dia's sampling, ``--steps`` steps exactly (EOS forbidden)."""
        options = {**SAMPLING, "max_new_tokens": self.args.steps, "suppress_tokens": [self.eos]}
        if static:
            options["cache_implementation"] = "static"
        return options

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def save(self) -> None:
        if self.args.json is not None:
            data = {**self.figures, "errors": self.errors}
            Path(self.args.json).write_text(json.dumps(data, indent=2) + "\n")


# --- printing -------------------------------------------------------------------------------


def number(value: float) -> str:
    """Three significant digits or so, never in exponent form."""
    magnitude = abs(value)
    decimals = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2 if magnitude >= 1 else 3
    return f"{value:.{decimals}f}"


def row(label: str, value: float, unit: str = "", note: str = "") -> None:
    print(f"  {label:<44} {number(value):>9} {unit:<4} {note}".rstrip(), flush=True)


def heading(title: str) -> None:
    print(f"\n{title}", flush=True)


def step_rows(prefix: str, figures: dict[str, float]) -> None:
    row(f"{prefix} first step (after encoder)", figures["first_step_ms"], "ms")
    row(
        f"{prefix} step median",
        figures["step_ms_median"],
        "ms",
        f"{figures['steps_per_s']:.1f} steps/s = {figures['x_real_time']:.2f}x real time",
    )
    row(
        f"{prefix} step p90",
        figures["step_ms_p90"],
        "ms",
        f"{figures['x_real_time_p90']:.2f}x real time ({figures['steps_measured']:.0f} steps)",
    )


# --- timing helpers -------------------------------------------------------------------------


class StepClock(BaseStreamer):
    """Records when each step's tokens reach the host (the first ``put`` is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


class StopAfter(StoppingCriteria):
    """Ends generation after ``steps`` steps without changing ``max_length`` (cache size)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.calls = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        self.calls += 1
        done = self.calls >= self.steps
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def step_figures(times: list[float], warmup: int) -> dict[str, float]:
    """Per-step statistics from a :class:`StepClock`'s timestamps."""
    gaps = [(b - a) * 1000 for a, b in pairwise(times)]
    if len(gaps) < warmup + 3:
        raise RuntimeError(f"only {len(gaps)} steps were generated")
    steady = gaps[1 + warmup :]
    median, tail = statistics.median(steady), p90(steady)
    real_time_ms = 1000 / FRAME_RATE
    return {
        "first_step_ms": gaps[0],
        "step_ms_median": median,
        "step_ms_p90": tail,
        "steps_per_s": 1000 / median,
        "x_real_time": real_time_ms / median,
        "x_real_time_p90": real_time_ms / tail,
        "steps_measured": float(len(steady)),
    }


def generate(bench: Bench, options: dict[str, object], stop_after: int | None = None) -> StepClock:
    """One ``model.generate`` of :data:`TEXT` on this thread; returns its step clock."""
    inputs = bench.processor(text=[TEXT], padding=False, return_tensors="pt").to(bench.device)
    clock = StepClock()
    criteria = StoppingCriteriaList([StopAfter(stop_after)] if stop_after else [])
    with torch.inference_mode():  # as the source runs it: the same compiled-graph guards
        bench.model.generate(**inputs, streamer=clock, stopping_criteria=criteria, **options)
    bench.sync()
    return clock


# --- sections -------------------------------------------------------------------------------


def build(bench: Bench) -> None:
    started = time.perf_counter()
    if bench.args.tiny:
        model, processor = tiny_dia()
        model.to(device=bench.device, dtype=bench.dtype)
        processor.audio_tokenizer.to(bench.device)
    else:
        model, processor = full_size_dia(str(bench.device), bench.dtype)
    bench.sync()
    seconds = time.perf_counter() - started
    bench.model, bench.processor = model, processor
    parameters = sum(p.numel() for p in model.parameters())
    bench.figures["build_s"] = seconds
    bench.figures["parameters"] = parameters
    bench.figures["settings"]["attn_implementation"] = model.config._attn_implementation
    size = f"{parameters / 1e9:.3f} B" if parameters >= 1e8 else f"{parameters / 1e6:.2f} M"
    dtype = str(bench.dtype).removeprefix("torch.")
    row(
        "model build",
        seconds,
        "s",
        f"{size} parameters, {dtype}, {model.config._attn_implementation}",
    )
    if bench.device.type == "cuda":
        weights = torch.cuda.memory_allocated(bench.device) / 2**20
        bench.figures["weights_mib"] = weights
        row("weights and codec on the device", weights, "MiB")


def eager_steps(bench: Bench) -> None:
    started = time.perf_counter()
    clock = generate(bench, bench.options())
    figures = {
        **step_figures(clock.times, WARMUP_STEPS),
        "generate_s": time.perf_counter() - started,
    }
    bench.figures["eager"] = figures
    step_rows("eager", figures)


def dac_windows(bench: Bench) -> dict[str, int]:
    """Window sizes worth timing: 16, 32, and each plan's first and steady windows."""
    sizes = {f"{n} frames": n for n in DAC_SIZES}
    for text in PLANS:
        plan = WindowPlan.parse(text)
        sizes[f"{text} first (K0+R0)"] = plan.first.frames + plan.first.lookahead
        steady = plan.steady.frames + plan.left_context + plan.steady.lookahead
        sizes[f"{text} steady (K+L+R)"] = steady
    return sizes


def dac_decode(bench: Bench) -> None:
    source = TransformersDiaSource(bench.model, bench.processor)
    generator = torch.Generator().manual_seed(0)
    figures: dict[str, float] = {}
    for label, frames in dac_windows(bench).items():
        codes = torch.randint(0, 1024, (frames, 9), generator=generator).tolist()
        window = Window(0, 0, frames, frames)
        times = []
        for i in range(DAC_REPEATS + 2):  # two warm-up decodes per size
            started = time.perf_counter()
            source.decode(codes, window)
            bench.sync()
            if i >= 2:
                times.append((time.perf_counter() - started) * 1000)
        figures[str(frames)] = statistics.median(times)
        realtime = frames / FRAME_RATE * 1000
        row(
            f"DAC decode, {label}",
            figures[str(frames)],
            "ms",
            f"{frames} frames = {realtime:.0f} ms",
        )
    bench.figures["dac_decode_ms"] = figures


def source_plan(bench: Bench, text: str, options: dict[str, object]) -> dict[str, float]:
    """First PCM, real-time factor and cancel latency of one plan through the source."""
    events: list[ChunkReady] = []
    plan = WindowPlan.parse(text)
    source = TransformersDiaSource(
        bench.model, bench.processor, plan=plan, generate_options=options, observer=events.append
    )
    started = time.perf_counter()
    first = 0.0
    audio_bytes = 0
    for chunk in source.generate(TEXT, "S1", 1.0):
        if not audio_bytes:
            first = time.perf_counter() - started
        audio_bytes += len(chunk)
    wall = time.perf_counter() - started
    first_steps = events[0].steps
    audio_s = audio_bytes / 2 / 44100
    # Again, closing the stream after its first chunk: how long until the model has stopped.
    started = time.perf_counter()
    stream = source.generate(TEXT, "S1", 1.0)
    next(stream)
    second_first = time.perf_counter() - started
    started = time.perf_counter()
    stream.close()
    cancel = time.perf_counter() - started
    return {
        "first_pcm_ms": first * 1000,
        "first_pcm_ms_again": second_first * 1000,
        "first_chunk_steps": float(first_steps),
        "expected_first_chunk_steps": float(source.first_chunk_steps),
        "audio_s": audio_s,
        "wall_s": wall,
        "rtf": wall / audio_s,  # compute seconds per audio second: < 1 is faster than real time
        "cancel_ms": cancel * 1000,
        "window_frames": float(plan.steady.frames + plan.left_context + plan.steady.lookahead),
    }


def source_plans(bench: Bench, key: str, options: dict[str, object]) -> None:
    results: dict[str, dict[str, float]] = {}
    bench.figures.setdefault(key, {})["plans"] = results
    for text in PLANS:
        name = f"{key} {text}"
        try:
            figures = source_plan(bench, text, options)
        except Exception as exc:
            fail(bench, name, exc)
            continue
        results[text] = figures
        steps = f"chunk left at step {figures['first_chunk_steps']:.0f}"
        row(f"{name}: first PCM", figures["first_pcm_ms"], "ms", f"{steps} (K0+R0+15)")
        row(f"{name}: first PCM, second run", figures["first_pcm_ms_again"], "ms")
        audio = f"{figures['audio_s']:.2f} s of audio in {figures['wall_s']:.2f} s"
        row(f"{name}: real-time factor", figures["rtf"], "s/s", audio)
        row(f"{name}: cancel (close)", figures["cancel_ms"], "ms")
        bench.save()


def compiled_steps(bench: Bench) -> None:
    options = bench.options(static=True)
    started = time.perf_counter()
    generate(bench, options, stop_after=COMPILE_WARMUP_STEPS)
    warmup = time.perf_counter() - started
    compiled = hasattr(bench.model, "_compiled_call")  # set by get_compiled_call
    started = time.perf_counter()
    clock = generate(bench, options)
    figures: dict[str, Any] = {
        **step_figures(clock.times, WARMUP_STEPS),
        "generate_s": time.perf_counter() - started,
        "compile_warmup_s": warmup,
        "compiled": compiled,
    }
    bench.figures["static"] = figures
    note = "" if compiled else "(not compiled: transformers auto-compiles on CUDA only)"
    row(f"compile + warm-up ({COMPILE_WARMUP_STEPS} steps)", warmup, "s", note)
    step_rows("static", figures)


def peak_memory(bench: Bench) -> None:
    if bench.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(bench.device) / 2**20
        kind = "torch.cuda.max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        kind = "process peak RSS (ru_maxrss)"
    bench.figures["peak_memory_mib"] = peak
    bench.figures["peak_memory_kind"] = kind
    row("peak memory", peak, "MiB", kind)


def fail(bench: Bench, name: str, exc: BaseException) -> None:
    bench.errors[name] = f"{type(exc).__name__}: {exc}"
    print(f"  {name} FAILED: {bench.errors[name]}", flush=True)


def section(bench: Bench, title: str, run: Callable[[Bench], None]) -> None:
    heading(f"{title}  [t = {bench.elapsed():.0f} s]")
    try:
        run(bench)
    except Exception as exc:
        fail(bench, title, exc)
    bench.save()


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_dia", description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny random Dia (dry run)")
    parser.add_argument("--compile", action="store_true", help="also static cache + compile")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="default: bfloat16 on CUDA")
    parser.add_argument("--steps", type=int, help="steps per generation (300; 60 with --tiny)")
    parser.add_argument("--budget-s", type=float, default=210.0, help="skip optional parts after")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 60 if args.tiny else 300
    if args.steps < MIN_STEPS:
        parser.error(f"--steps must be at least {MIN_STEPS}")
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") and not args.tiny else "float32"
    return args


def versions(device: torch.device) -> dict[str, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device_name": name,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    bench = Bench(args, device, DTYPES[args.dtype])
    info = versions(device)
    bench.figures["versions"] = info
    bench.figures["settings"] = {
        "device": str(device),
        "dtype": args.dtype,
        "model": "tiny" if args.tiny else "full size (Dia-1.6B geometry)",
        "steps": args.steps,
        "warmup_steps": WARMUP_STEPS,
        "compile": args.compile,
        "sampling": SAMPLING,
        "text": TEXT,
    }
    print(
        f"Dia streaming check: torch {info['torch']}, transformers {info['transformers']}, "
        f"python {info['python']}, {info['device_name']} ({device}), {args.dtype}, "
        f"{bench.figures['settings']['model']}, {args.steps} steps a generation",
        flush=True,
    )
    print(f"  real time: {FRAME_RATE:.2f} frames/s = {1000 / FRAME_RATE:.2f} ms a step")
    section(bench, "Build", build)
    if bench.model is None:
        return 1
    section(bench, "Eager generation (dynamic cache)", eager_steps)
    section(bench, "DAC decode (codes to float audio, median)", dac_decode)
    section(bench, "Through TransformersDiaSource", lambda b: source_plans(b, "eager", b.options()))
    if args.compile:
        section(bench, "Static cache (torch.compile on CUDA)", compiled_steps)
        if bench.elapsed() < args.budget_s:
            static = bench.options(static=True)
            section(
                bench,
                "Static cache through the source",
                lambda b: source_plans(b, "static", static),
            )
        else:
            bench.figures["skipped"] = ["static source runs (--budget-s)"]
            print(f"\n(static-cache source runs skipped: past --budget-s {args.budget_s:.0f} s)")
    section(bench, "Memory", peak_memory)
    print(f"\ndone in {bench.elapsed():.1f} s; {len(bench.errors)} section(s) failed", flush=True)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
