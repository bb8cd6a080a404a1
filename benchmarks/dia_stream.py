"""P10: the real Dia code path (transformers), streamed against the whole-batch way.

Both run the tiny random-weight Dia (``diaproto.apps.serve.sources.dia.random_weights``) on
the CPU, one torch thread, in this process, alternating round by round: the streamed source
(``TransformersDiaSource``: per-step codes, windowed DAC decode) and one ``generate`` followed
by one ``batch_decode``, which is how Dia is usually run. Time to first audio and the
real-time factor (compute seconds per second of audio) for the same text and length. The
full-size model's figures need a GPU: ``python -m benchmarks.gpu_dia`` (docs/dia.md).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.scenarios import Level, Result, Scenario, Tick, judge, med, rotated
from benchmarks.stats import Series

STREAMED = "streamed (TransformersDiaSource, plan 4:10,16:10,12)"
WHOLE = "whole batch (generate, then batch_decode)"
SYSTEMS = [STREAMED, WHOLE]
TEXT = "Hello there, this is the real Dia code path on a tiny model."
SAMPLE_RATE = 44100


class _Tiny:
    """The tiny model and both ways of running it, built once per run."""

    def __init__(self, steps: int) -> None:
        import torch  # noqa: PLC0415 (an optional install: the scenario skips without it)

        from diaproto.apps.serve.sources.dia.model import TransformersDiaSource  # noqa: PLC0415
        from diaproto.apps.serve.sources.dia.random_weights import tiny_dia  # noqa: PLC0415
        from diaproto.apps.serve.sources.dia.tensor_audio import pcm16  # noqa: PLC0415

        torch.set_num_threads(1)
        self.torch, self.pcm16 = torch, pcm16
        self.model, self.processor = tiny_dia()
        eos = int(self.model.config.decoder_config.eos_token_id)
        # Greedy with EOS forbidden: both ways generate exactly ``steps`` steps.
        self.options: dict[str, Any] = {
            "max_new_tokens": steps,
            "do_sample": False,
            "suppress_tokens": [eos],
        }
        self.first_steps: list[int] = []
        self.source = TransformersDiaSource(
            self.model,
            self.processor,
            generate_options=self.options,
            observer=lambda ready: self.first_steps.append(ready.steps),
        )

    def streamed(self) -> tuple[float, float]:
        """(ms to the first chunk, compute seconds per audio second)."""
        started = time.perf_counter()
        first = 0.0
        audio_bytes = 0
        self.first_steps.clear()
        for chunk in self.source.generate(TEXT, "S1", 1.0):
            if not audio_bytes:
                first = time.perf_counter() - started
            audio_bytes += len(chunk)
        return first * 1000, (time.perf_counter() - started) / (audio_bytes / 2 / SAMPLE_RATE)

    def whole(self) -> tuple[float, float]:
        """The same text, one generate then one decode: the first byte is the last."""
        started = time.perf_counter()
        inputs = self.processor(text=[f"[S1] {TEXT}"], padding=False, return_tensors="pt")
        with self.torch.inference_mode():
            out = self.model.generate(**inputs, **self.options)
        pcm = self.pcm16(self.processor.batch_decode(out)[0])
        elapsed = time.perf_counter() - started
        return elapsed * 1000, elapsed / (len(pcm) / 2 / SAMPLE_RATE)


class DiaFirstAudio(Scenario):
    id, title = "P10", "real Dia code path: first audio and real-time factor"

    def systems(self, level: Level) -> list[str]:
        return SYSTEMS

    def run(self, level: Level, tick: Tick) -> list[Result]:
        steps = int(level.pick(60, 240, 600))
        try:
            tiny = _Tiny(steps)
        except ImportError as exc:
            why = f"torch/transformers are not installed ({exc}): pip install 'diaproto[dia]'"
            return [Result("P10", self.title, "", False, {}, skipped=why)]
        ways = {STREAMED: tiny.streamed, WHOLE: tiny.whole}
        first = {s: Series(s) for s in SYSTEMS}
        rtf = {s: Series(s) for s in SYSTEMS}
        for way in ways.values():
            way()  # warm-up: first calls pay for lazy initialisation
        for r in range(level.rounds):
            for system in rotated(SYSTEMS, r):
                ms, factor = ways[system]()
                first[system].rounds.append(ms)
                rtf[system].rounds.append(factor)
                tick()
        frames = steps - 16
        shape = f"{frames} frames ({frames * 512 / SAMPLE_RATE:.2f} s of audio, {steps} steps)"
        ttfa = Result(
            "P10-ttfa",
            f"Time to first audio, tiny random-weight Dia on 1 CPU thread, {shape}",
            "ms",
            False,
            first,
            target="first audio after K0+R0+15 steps, not after the whole batch",
            reference=STREAMED,
        )
        ttfa.notes.append(
            f"The streamed source's first chunk left after {tiny.first_steps[0]} steps "
            f"(K0 + R0 + 15 = {tiny.source.first_chunk_steps}); the whole-batch way's first "
            f"byte waits for all {steps} steps and one decode. On a GPU the step time, not "
            "the count, changes: docs/dia.md."
        )

        def check_first(s: dict[str, Series]) -> tuple[bool, str]:
            ours, whole = med(s, STREAMED), med(s, WHOLE)
            return (
                ours < whole,
                f"{ours:.0f} ms streamed vs {whole:.0f} ms whole ({whole / ours:.1f}x)",
            )

        judge(ttfa, check_first)
        realtime = Result(
            "P10-rtf",
            f"Real-time factor (compute s per audio s), same runs: {shape}",
            "x",
            False,
            rtf,
            target="streaming costs little throughput: within 1.5x of the whole-batch way",
            reference=STREAMED,
        )
        realtime.notes.append(
            "Streaming decodes overlapping DAC windows (K + L + R frames to keep K: 2.4x the "
            "frames of one whole decode with the default plan); on the tiny model the codec is "
            "a large share of the work, at full size the model's steps dominate and the GPU "
            "check (python -m benchmarks.gpu_dia) measures both."
        )

        def check_rtf(s: dict[str, Series]) -> tuple[bool, str]:
            ours, whole = med(s, STREAMED), med(s, WHOLE)
            return ours <= 1.5 * whole, f"{ours:.2f} streamed vs {whole:.2f} whole"

        judge(realtime, check_rtf)
        return [ttfa, realtime]
