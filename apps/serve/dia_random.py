"""Dia and its DAC codec with seeded random weights, built in code: no download.

``tiny_dia`` has the real channels, vocabulary, delay pattern and codec geometry (hop 512 at
44.1 kHz, 9 codebooks of 1024) at a depth and width that generate a step in milliseconds on
one CPU thread: the tests and the CPU benchmark run the real code path on it. Random weights
change nothing in the shapes, so they change nothing in the timing either.
"""

from __future__ import annotations

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
)
from transformers.models.dia.configuration_dia import DiaDecoderConfig, DiaEncoderConfig

SEED = 1234


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
