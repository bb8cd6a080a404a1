"""The synthetic source: the formant voice, paced like a model faster than real time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator

from diaproto.apps.serve.audio import duration
from diaproto.apps.serve.model_queue import Admission, ModelQueue
from diaproto.apps.serve.sources.voice_synth import synthesize


class SyntheticSource:
    """Speech-like audio without a model, paced like a model running faster than real time."""

    name: str = "synthetic"
    model_queue: ModelQueue | None = None  # no model: every request runs at once

    def __init__(
        self,
        real_time_factor: float = 0.4,
        first_chunk_latency: float = 0.15,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if real_time_factor < 0 or first_chunk_latency < 0:
            raise ValueError("real_time_factor and first_chunk_latency must not be negative")
        self.real_time_factor = real_time_factor
        self.first_chunk_latency = first_chunk_latency
        self._sleep = sleep

    def generate(
        self,
        text: str,
        voice: str,
        speed: float,
        *,
        stop: threading.Event | None = None,
        admission: Admission | None = None,
    ) -> Generator[bytes, None, None]:
        """Chunks of :func:`synthesize`, each after the time a model would take for it.

        ``stop`` needs no watching here: a chunk never takes more than a few milliseconds.
        """
        return self._paced(synthesize(text, voice, speed))

    def _paced(self, chunks: Iterator[bytes]) -> Generator[bytes, None, None]:
        if self.first_chunk_latency > 0:
            self._sleep(self.first_chunk_latency)
        owed = 0.0
        for chunk in chunks:
            owed += self.real_time_factor * duration(len(chunk))
            # One chunk is ~4.6 ms of waiting at rtf 0.4: pay in slices of at least 5 ms,
            # since shorter sleeps overshoot by the timer's granularity.
            if owed >= 0.005:
                self._sleep(owed)
                owed = 0.0
            yield chunk
        if owed > 0:
            self._sleep(owed)
