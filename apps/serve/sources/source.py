"""What every speech source is: the :class:`Source` protocol and the rules its output keeps.

A source takes a text, a voice (S1 or S2) and a speed, and yields PCM s16le chunks of
``FRAME_BYTES`` (:func:`framed` cuts them so); it is refused with :class:`SourceUnavailable`
when it cannot run here.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from typing import Protocol

from diaproto.apps.serve.audio import FRAME_BYTES
from diaproto.apps.serve.model_queue import Admission, ModelQueue

VOICES = ("S1", "S2")
MIN_SPEED = 0.25
MAX_SPEED = 4.0


class Source(Protocol):
    """What a generation runs: one blocking model run per request."""

    name: str

    @property
    def model_queue(self) -> ModelQueue | None:
        """Turns at the source's model, when it has one that runs one generation at a time."""
        ...

    def generate(
        self,
        text: str,
        voice: str,
        speed: float,
        *,
        stop: threading.Event | None = None,
        admission: Admission | None = None,
    ) -> Generator[bytes, None, None]:
        """PCM s16le 44.1 kHz mono chunks of FRAME_BYTES (the last may be short).

        Closing the generator stops the work: nothing keeps computing for a gone client.
        ``stop`` being set (by another thread, while the generator may be blocked waiting for
        its model) asks the same: a source ends its iteration as soon as its model allows.
        ``admission`` is the request's place with ``model_queue``, taken when the request was
        accepted; without one, the source takes its own for the call.
        """
        ...


class SourceUnavailable(RuntimeError):
    """The source cannot run here (package missing, weights not loadable)."""


def check_voice_and_speed(voice: str, speed: float) -> None:
    """Raise ValueError unless ``voice`` is S1/S2 and ``speed`` is in 0.25..4.0."""
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {', '.join(VOICES)}, got {voice!r}")
    if isinstance(speed, bool) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be a number in {MIN_SPEED}..{MAX_SPEED}, got {speed!r}")


def framed(pieces: Iterator[bytes]) -> Generator[bytes, None, None]:
    """Re-cut PCM pieces into FRAME_BYTES chunks; only the very last chunk may be short.

    Closing the result closes ``pieces`` at once (a generator's cleanup stops its model).
    """
    buf = bytearray()
    try:
        for piece in pieces:
            buf += piece
            if len(buf) >= FRAME_BYTES:
                whole = len(buf) - len(buf) % FRAME_BYTES
                for start in range(0, whole, FRAME_BYTES):
                    yield bytes(buf[start : start + FRAME_BYTES])
                del buf[:whole]
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    if buf:
        yield bytes(buf)
