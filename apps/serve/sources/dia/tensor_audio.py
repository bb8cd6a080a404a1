"""The model's float audio made into what the service streams, on the tensor: PCM s16le bytes
(:func:`pcm16`). A speed change keeps the pitch: :class:`diaproto.apps.serve.tempo.Tempo`."""

from __future__ import annotations

import torch


def pcm16(samples: torch.Tensor) -> bytes:
    """Float samples in [-1, 1] to PCM s16le bytes, on the tensor (NaN becomes silence)."""
    clean = torch.nan_to_num(samples.detach().float(), nan=0.0).clamp(-1.0, 1.0)
    as_int = (clean * 32767.0).round().to(torch.int16).cpu()
    return bytes(as_int.numpy().astype("<i2").tobytes())
