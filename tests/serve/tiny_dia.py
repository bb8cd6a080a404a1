"""A tiny random-weight Dia and DAC, built in code (no download): the real code paths of
transformers' Dia at a size that generates a step in milliseconds on one CPU thread.

Same channels, vocabulary, delay pattern and DAC geometry (hop 512 at 44.1 kHz, 9 codebooks
of 1024) as Dia-1.6B; only the depth and width are small.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DacConfig,
    DacModel,
    DiaConfig,
    DiaFeatureExtractor,
    DiaForConditionalGeneration,
    DiaProcessor,
    DiaTokenizer,
    LogitsProcessor,
)
from transformers.models.dia.configuration_dia import DiaDecoderConfig, DiaEncoderConfig

SEED = 1234
EOS = 1024


def tiny_dia(seed: int = SEED) -> tuple[Any, Any]:
    """A 2+2-layer Dia (hidden 64) and a narrow DAC decoder, with seeded random weights."""
    torch.set_num_threads(1)  # a busy 2-core box: OpenMP waits cost more than the maths
    torch.manual_seed(seed)
    encoder = DiaEncoderConfig(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
    )
    decoder = DiaDecoderConfig(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        cross_num_attention_heads=2,
        cross_head_dim=32,
        cross_num_key_value_heads=2,
        cross_hidden_size=64,
    )
    model: Any = DiaForConditionalGeneration(
        DiaConfig(encoder_config=encoder, decoder_config=decoder)
    )
    codec: Any = DacModel(
        DacConfig(
            encoder_hidden_size=8,
            downsampling_ratios=[2, 4, 8, 8],
            decoder_hidden_size=64,
            n_codebooks=9,
            codebook_size=1024,
            codebook_dim=8,
            sampling_rate=44100,
        )
    )
    model.eval()
    codec.eval()
    processor_class: Any = DiaProcessor  # its __init__ is untyped
    processor = processor_class(DiaFeatureExtractor(sampling_rate=44100), DiaTokenizer(), codec)
    return model, processor


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
