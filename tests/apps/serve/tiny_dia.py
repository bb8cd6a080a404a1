"""Test helpers for the tiny random-weight Dia: save it as a checkpoint, steer or hold its
generation from a logits processor."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor

from diaproto.apps.serve.sources.dia.random_weights import SEED, tiny_dia

EOS = 1024


def save_tiny_dia(directory: Path, seed: int = SEED) -> Path:
    """The tiny model saved as a checkpoint directory that ``--weights DIR`` loads."""
    model, processor = tiny_dia(seed)
    codec_dir = directory / "dac"
    processor.audio_tokenizer.save_pretrained(codec_dir)
    processor.audio_tokenizer.name_or_path = str(codec_dir)  # where the processor finds it
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def add_logits_processor(model: Any, processor: LogitsProcessor) -> None:
    """Run ``processor`` in every step of ``model.generate``, before Dia's EOS delay processor.

    transformers' Dia builds its own processor list and drops ``generate(logits_processor=...)``
    (5.24), so tests that steer the end of a generation hook in here.
    """
    original = model._get_logits_processor

    def with_extra(*args: Any, **kwargs: Any) -> Any:
        merged = original(*args, **kwargs)
        merged.insert(len(merged) - 1, processor)  # the last one forces Dia's EOS tail
        return merged

    model._get_logits_processor = with_extra


class StepCounter(LogitsProcessor):
    """Counts generation steps (one call per step); changes nothing."""

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> Any:
        self.steps += 1
        return scores


class EosAt(LogitsProcessor):
    """Channel 0 says EOS at step ``step`` (1-based) and never earlier."""

    def __init__(self, step: int, channels: int = 9) -> None:
        self.step = step
        self.channels = channels
        self.calls = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> Any:
        self.calls += 1
        scores = scores.clone()
        channel_zero = scores.view(-1, self.channels, scores.shape[-1])[:, 0]
        if self.calls == self.step:
            channel_zero[:, :] = -float("inf")
            channel_zero[:, EOS] = 0.0
        else:
            channel_zero[:, EOS] = -float("inf")
        return scores


class StepGate(LogitsProcessor):
    """Holds generation at step ``hold_at`` (before it is computed) until ``release()``.

    A test that receives audio while the gate holds knows the audio needed no more than
    ``hold_at - 1`` steps: streaming proved by step counts, not by a clock.
    """

    def __init__(self, hold_at: int, limit: float = 120.0) -> None:
        self.hold_at = hold_at
        self.limit = limit  # a test that fails midway must not leave the model held forever
        self.calls = 0
        self.holding = threading.Event()
        self._go = threading.Event()

    def release(self) -> None:
        self._go.set()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> Any:
        self.calls += 1
        if self.calls == self.hold_at:
            self.holding.set()
            if not self._go.wait(self.limit):
                raise RuntimeError("the test never released the step gate")
            self.holding.clear()
        return scores
