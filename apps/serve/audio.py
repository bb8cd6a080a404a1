"""PCM s16le helpers: the audio format every source yields and every endpoint sends.

Dia decodes DAC codes to 44.1 kHz mono; one DAC frame is 512 samples (about 86.1 frames
per second), so chunks of one frame are the smallest unit the model can produce.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 44100
CHANNELS = 1
SAMPLE_WIDTH = 2  # bytes per sample: PCM signed 16-bit little-endian
FRAME_SAMPLES = 512
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH * CHANNELS  # 1024
BYTES_PER_SECOND = float(SAMPLE_RATE * SAMPLE_WIDTH * CHANNELS)  # 88,200: real time

WAV_HEADER_BYTES = 44
# Streaming WAV (length unknown when the header is sent): the RIFF and data sizes are set to
# the largest 32-bit value, as OpenAI's streaming WAV does; readers then read to end of file.
STREAMING_SIZE = 0xFFFFFFFF


def wav_header(
    data_size: int | None = None,
    sample_rate: int = SAMPLE_RATE,
    channels: int = CHANNELS,
    bits: int = 16,
) -> bytes:
    """The 44-byte RIFF/WAVE header for PCM data; ``data_size=None`` means streaming."""
    if bits % 8 or bits <= 0:
        raise ValueError(f"bits must be a positive multiple of 8, got {bits}")
    if sample_rate <= 0 or channels <= 0:
        raise ValueError("sample_rate and channels must be positive")
    block_align = channels * bits // 8
    if data_size is None:
        data_field = riff_field = STREAMING_SIZE
    else:
        if not 0 <= data_size <= STREAMING_SIZE - 36:
            raise ValueError(f"data_size must be in 0..{STREAMING_SIZE - 36}, got {data_size}")
        if data_size % block_align:
            raise ValueError(f"data_size must be a multiple of {block_align} (whole frames)")
        data_field, riff_field = data_size, 36 + data_size
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff_field,
        b"WAVE",
        b"fmt ",
        16,  # fmt chunk size for PCM
        1,  # WAVE_FORMAT_PCM
        channels,
        sample_rate,
        sample_rate * block_align,  # byte rate
        block_align,
        bits,
        b"data",
        data_field,
    )


def float_to_pcm16(samples: Sequence[float] | npt.NDArray[np.floating[Any]]) -> bytes:
    """Float samples in [-1, 1] (clipped; NaN becomes 0) to PCM s16le bytes, vectorised.

    -1.0 and 1.0 map to -32767 and 32767: symmetric, equal magnitudes.
    """
    values = np.nan_to_num(np.asarray(samples, dtype=np.float64), nan=0.0)
    scaled = np.rint(np.clip(values, -1.0, 1.0) * 32767)
    return scaled.astype("<i2").tobytes()


def frames(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> Iterator[bytes]:
    """Cut ``pcm`` into chunks of ``frame_bytes``; the last one may be short."""
    if frame_bytes <= 0:
        raise ValueError(f"frame_bytes must be positive, got {frame_bytes}")
    view = memoryview(pcm)
    for start in range(0, len(view), frame_bytes):
        yield bytes(view[start : start + frame_bytes])


def duration(nbytes: int) -> float:
    """Seconds of audio in ``nbytes`` of PCM s16le at SAMPLE_RATE, CHANNELS."""
    return nbytes / (SAMPLE_RATE * SAMPLE_WIDTH * CHANNELS)
