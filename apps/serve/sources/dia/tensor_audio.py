"""The model's float audio made into what the service streams, on the tensor: a speed change
(:class:`LinearResampler`) and PCM s16le bytes (:func:`pcm16`)."""

from __future__ import annotations

import math

import torch


def pcm16(samples: torch.Tensor) -> bytes:
    """Float samples in [-1, 1] to PCM s16le bytes, on the tensor (NaN becomes silence)."""
    clean = torch.nan_to_num(samples.detach().float(), nan=0.0).clamp(-1.0, 1.0)
    as_int = (clean * 32767.0).round().to(torch.int16).cpu()
    return bytes(as_int.numpy().astype("<i2").tobytes())


class LinearResampler:
    """Plays a stream ``speed`` times faster by linear interpolation (pitch moves too).

    Output sample ``j`` sits at input position ``j * speed``; chunks are resampled as they
    come, and the output does not depend on how the input was cut.
    """

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._tail = torch.zeros(0)  # input from index _offset on, still needed
        self._offset = 0
        self._seen = 0
        self._emitted = 0

    def push(self, samples: torch.Tensor) -> torch.Tensor:
        if self.speed == 1.0:
            return samples
        buffer = torch.cat([self._tail.to(samples), samples.reshape(-1)])
        self._seen += samples.numel()
        last = self._seen - 1
        # Output j needs inputs floor(j*speed) and the one after it: all j with j*speed < last.
        ready = max(self._emitted, math.ceil(last / self.speed)) if last > 0 else self._emitted
        out = self._interpolate(buffer, self._emitted, ready, last)
        self._emitted = ready
        keep_from = min(math.floor(ready * self.speed), last)
        self._tail = buffer[max(0, keep_from - self._offset) :]
        self._offset = max(self._offset, keep_from)
        return out

    def finish(self) -> torch.Tensor:
        """The samples still owed: ``round(n / speed)`` in all for ``n`` samples in (or one
        more, when the chunks before already reached past that)."""
        total = max(1, round(self._seen / self.speed)) if self._seen else 0
        if self.speed == 1.0 or total <= self._emitted:
            return self._tail[:0]
        out = self._interpolate(self._tail, self._emitted, total, self._seen - 1)
        self._emitted = total
        return out

    def _interpolate(self, buffer: torch.Tensor, first: int, stop: int, last: int) -> torch.Tensor:
        if stop <= first:
            return buffer[:0]
        # On the audio's device: a CUDA tensor times a CPU one that is not a scalar is refused.
        positions = torch.arange(first, stop, dtype=torch.float64, device=buffer.device)
        positions = positions * self.speed
        index = positions.floor().long().clamp(max=last)
        frac = (positions - index.double()).clamp(0.0, 1.0).to(buffer.dtype)
        local = index - self._offset
        after = (index + 1).clamp(max=last) - self._offset
        return buffer[local] + (buffer[after] - buffer[local]) * frac
