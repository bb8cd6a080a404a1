"""Speech made faster or slower with its pitch kept: FFmpeg's ``atempo`` (WSOLA), through PyAV.

A source that cannot change its own pace (Dia speaks at one rate) runs its PCM through a
:class:`Tempo`. Resampling instead would move the pitch with the pace: at speed 2 a voice
an octave up, which is not what OpenAI's ``speed`` means.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

import av
import numpy as np

from diaproto.apps.serve.audio import SAMPLE_RATE

# One atempo filter takes 0.5..100; slower needs a chain (0.25 = 0.5 x 0.5).
ATEMPO_MIN: Final = 0.5


def atempo_factors(speed: float) -> list[float]:
    """``speed`` as a product of factors each one ``atempo`` takes."""
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    factors: list[float] = []
    while speed < ATEMPO_MIN:
        factors.append(ATEMPO_MIN)
        speed /= ATEMPO_MIN
    return [*factors, speed]


class Tempo:
    """PCM s16le mono in, the same speech ``speed`` times faster out, a chunk at a time."""

    def __init__(self, speed: float, sample_rate: int = SAMPLE_RATE) -> None:
        self.speed = speed
        self.sample_rate = sample_rate
        self._time_base = Fraction(1, sample_rate)
        self._pts = 0
        self._odd = b""  # a byte of a sample cut in two by the input's chunking
        self._graph: av.filter.Graph | None = None
        if speed != 1.0:
            self._graph = self._build(atempo_factors(speed))

    def _build(self, factors: list[float]) -> av.filter.Graph:
        graph = av.filter.Graph()
        node = graph.add_abuffer(
            sample_rate=self.sample_rate, format="s16", layout="mono", time_base=self._time_base
        )
        for factor in factors:
            stage = graph.add("atempo", f"{factor:.6f}")
            node.link_to(stage)
            node = stage
        sink = graph.add("abuffersink")
        node.link_to(sink)
        graph.configure()
        return graph

    def push(self, pcm: bytes) -> bytes:
        """What ``pcm`` makes ready at the new pace (a sample cut at its end waits for its
        other byte)."""
        if self._graph is None:
            return pcm
        pcm = self._odd + pcm
        whole = len(pcm) - len(pcm) % 2
        self._odd = pcm[whole:]
        if not whole:
            return b""
        samples = np.frombuffer(pcm, dtype="<i2", count=whole // 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += samples.shape[1]
        self._graph.push(frame)
        return self._pull()

    def finish(self) -> bytes:
        """The rest the filter holds (its window), once."""
        if self._graph is None:
            return b""
        self._graph.push(None)
        out = self._pull()
        self._graph = None
        return out

    def _pull(self) -> bytes:
        assert self._graph is not None
        out = bytearray()
        while True:
            try:
                frame = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return bytes(out)
            out += frame.to_ndarray().astype("<i2").tobytes()
