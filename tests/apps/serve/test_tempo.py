"""Speed with the pitch kept (FFmpeg's atempo through PyAV): the pace changes, the pitch does
not, and the output does not depend on how the input was cut."""

from __future__ import annotations

import numpy as np
import pytest

from diaproto.apps.serve.audio import SAMPLE_RATE
from diaproto.apps.serve.tempo import Tempo, atempo_factors

TONE_HZ = 220.0


def tone(seconds: float, hz: float = TONE_HZ) -> bytes:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.4 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2").tobytes()


def pitch(pcm: bytes) -> float:
    """The strongest frequency of ``pcm`` (an FFT peak, to within a bin)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])


def stretched(speed: float, pcm: bytes, cut: int) -> bytes:
    tempo = Tempo(speed)
    out = b"".join(tempo.push(pcm[i : i + cut]) for i in range(0, len(pcm), cut))
    return out + tempo.finish()


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.5, 2.0, 4.0])
def test_the_pace_changes_and_the_pitch_stays(speed: float) -> None:
    source = tone(2.0)
    out = stretched(speed, source, 1024)
    assert len(out) % 2 == 0
    expected = len(source) / speed
    assert abs(len(out) - expected) <= 0.03 * expected, (len(out), expected)
    assert abs(pitch(out) - TONE_HZ) <= 2.0  # resampling would move it to 220 * speed


def test_the_output_does_not_depend_on_the_cuts() -> None:
    source = tone(1.0, 330.0)
    small, large = stretched(1.7, source, 512), stretched(1.7, source, 8192)
    assert abs(len(small) - len(large)) <= 2 * 1024  # within one filter window
    assert abs(pitch(small) - pitch(large)) <= 2.0


def test_speed_one_passes_through_and_empty_input_is_nothing() -> None:
    tempo = Tempo(1.0)
    assert tempo.push(b"\x01\x00") == b"\x01\x00"
    assert tempo.finish() == b""
    assert Tempo(2.0).push(b"") == b""


def test_slow_speeds_chain_filters() -> None:
    assert atempo_factors(0.25) == [0.5, 0.5]
    assert atempo_factors(3.0) == [3.0]
    with pytest.raises(ValueError, match="positive"):
        atempo_factors(0.0)
