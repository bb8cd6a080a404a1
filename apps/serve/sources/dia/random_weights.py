"""Dia and its DAC codec with seeded random weights, built in code: no download.

``tiny_dia`` has the real channels, vocabulary, delay pattern and codec geometry (hop 512 at
44.1 kHz, 9 codebooks of 1024) at a depth and width that generate a step in milliseconds on
one CPU thread: the tests and the CPU benchmark run the real code path on it. Random weights
change nothing in the shapes, so they change nothing in the timing either.

``full_size_dia`` is Dia-1.6B's geometry (``DiaConfig()`` defaults, 1.611 B parameters) and the
full DAC 44 kHz codec with seeded random weights, built directly on the target device in
seconds: what ``python -m benchmarks.gpu_dia`` times without downloading the checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    DacConfig,
    DacModel,
    DiaConfig,
    DiaFeatureExtractor,
    DiaForConditionalGeneration,
    DiaProcessor,
    DiaTokenizer,
)
from transformers.initialization import no_init_weights
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


def full_dac_config() -> Any:
    """The geometry of ``descript/dac_44khz``, the codec Dia-1.6B decodes with."""
    return DacConfig(
        encoder_hidden_size=64,
        downsampling_ratios=[2, 4, 8, 8],
        decoder_hidden_size=1536,
        n_codebooks=9,
        codebook_size=1024,
        codebook_dim=8,
        sampling_rate=44100,
    )


def fill_random(module: nn.Module, std: float = 0.02) -> None:
    """Every parameter set in place: norm scales and Snake alphas 1, biases 0, the rest
    normal(0, ``std``). Buffers (Dia's channel offsets, RoPE frequencies) are left as built."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "alpha" or (parameter.ndim == 1 and "norm" in name):
                parameter.fill_(1.0)
            elif leaf == "bias":
                parameter.zero_()
            else:
                parameter.normal_(0.0, std)


def full_size_dia(device: str, dtype: torch.dtype, seed: int = SEED) -> tuple[Any, Any]:
    """Dia-1.6B (``dtype``) and the DAC 44 kHz codec (float32) on ``device``, random weights.

    The modules are constructed on ``device`` itself with transformers' and torch's weight
    initialisation switched off (``transformers.initialization.no_init_weights``), then filled
    by :func:`fill_random` from ``seed``: no host copy, no slow init. (Not the ``meta`` device
    and ``to_empty``: that leaves the buffers built in ``__init__``, such as Dia's embedding
    channel offsets, uninitialised.)
    """
    torch.manual_seed(seed)
    model_class: Any = DiaForConditionalGeneration  # _from_config is untyped
    with torch.device(device), no_init_weights():
        model: Any = model_class._from_config(DiaConfig(), dtype=dtype)
        codec: Any = DacModel(full_dac_config())
    fill_random(model)
    fill_random(codec)
    model.eval()
    codec.eval()
    processor_class: Any = DiaProcessor  # its __init__ is untyped
    processor = processor_class(DiaFeatureExtractor(sampling_rate=44100), DiaTokenizer(), codec)
    return model, processor
