"""Speech sources: the synthetic voice sounds like speech and is paced; loading Dia."""

from __future__ import annotations

import itertools
import math
import struct
import sys
from collections.abc import Generator

import pytest

from diaproto.apps.serve.audio import FRAME_BYTES, SAMPLE_RATE, duration, float_to_pcm16
from diaproto.apps.serve.sources import (
    Source,
    SourceUnavailable,
    SyntheticSource,
    load_source,
    synthesize,
    voice_synth,
)


def samples(pcm: bytes) -> list[float]:
    return [v / 32767 for v in struct.unpack(f"<{len(pcm) // 2}h", pcm)]


def speak(text: str, voice: str = "S1", speed: float = 1.0) -> bytes:
    return b"".join(synthesize(text, voice, speed))


def windows(x: list[float], ms: float = 10.0) -> list[list[float]]:
    n = int(SAMPLE_RATE * ms / 1000)
    return [x[i : i + n] for i in range(0, len(x) - n + 1, n)]


def rms(w: list[float]) -> float:
    return math.sqrt(sum(v * v for v in w) / len(w))


def zcr(w: list[float]) -> float:
    return sum(1 for a, b in itertools.pairwise(w) if (a < 0) != (b < 0)) / len(w)


def pitch(x: list[float]) -> float:
    """The f0 of a voiced stretch by autocorrelation over 80..400 Hz."""
    best_lag, best = 0, -math.inf
    for lag in range(SAMPLE_RATE // 400, SAMPLE_RATE // 80):
        score = sum(x[i] * x[i + lag] for i in range(len(x) - lag)) / (len(x) - lag)
        if score > best:
            best_lag, best = lag, score
    return SAMPLE_RATE / best_lag


def longest_silence(x: list[float]) -> float:
    longest = run = 0
    for v in x:
        run = run + 1 if v == 0.0 else 0
        longest = max(longest, run)
    return longest / SAMPLE_RATE


# --- synthetic: what it sounds like -------------------------------------------------------


def test_deterministic_and_text_dependent() -> None:
    text = "[S1] Dia is an open weights model. [S2] You get full control!"
    assert speak(text) == speak(text)
    assert speak(text) != speak("[S1] Dia is an open weights modal. [S2] You get full control!")
    assert speak("Hello there.", "S1") != speak("Hello there.", "S2")
    assert speak("Hello there.", speed=1.0) != speak("Hello there.", speed=1.5)


def test_chunks_are_whole_frames_but_the_last() -> None:
    chunks = list(synthesize("Stream me in frames, please.", "S1", 1.0))
    assert len(chunks) > 10
    assert all(len(c) == FRAME_BYTES for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= FRAME_BYTES


def test_not_silence_and_not_a_constant_tone() -> None:
    x = samples(speak("She sells sea shells, by the sea shore. Quietly!"))
    levels = [rms(w) for w in windows(x)]
    assert max(levels) > 0.15  # clearly audible
    assert min(levels) < 0.001  # pauses between words and sentences
    active = [w for w, level in zip(windows(x), levels, strict=True) if level > 0.03]
    assert len(active) > 50
    rates = [zcr(w) for w in active]
    # Hiss ("s", "sh") crosses zero far more often than vowels do.
    assert max(rates) > 4 * min(rates)
    # The loudness of voiced stretches moves too (attack and decay), not on/off only.
    assert len({round(level, 2) for level in levels if level > 0.03}) > 10


def band(x: list[float], low: int, high: int) -> float:
    """Energy of ``x`` between ``low`` and ``high`` Hz, sampled every 20 Hz (a slow DFT)."""
    total = 0.0
    for f in range(low, high, 20):
        w = 2 * math.pi * f / SAMPLE_RATE
        re = sum(v * math.cos(w * i) for i, v in enumerate(x))
        im = sum(v * math.sin(w * i) for i, v in enumerate(x))
        total += (re * re + im * im) / len(x) ** 2
    return total


def test_spectrum_follows_the_vowel() -> None:
    def bands(vowel: str) -> tuple[float, float, float]:
        x = samples(speak(vowel))[882 : 882 + 1500]  # inside the vowel, past the attack
        return band(x, 100, 400), band(x, 500, 1200), band(x, 1800, 2600)

    ah, ee, oo = bands("ah"), bands("ee"), bands("oo")
    # "ee" has its second formant near 2.3 kHz; "ah" and "oo" have theirs below 1.2 kHz.
    assert ee[2] / ee[1] > 4 * ah[2] / ah[1]
    assert ee[2] / ee[1] > 4 * oo[2] / oo[1]
    # "oo" has a low first formant (300 Hz), "ah" a high one (730 Hz).
    assert oo[0] / oo[1] > 2 * ah[0] / ah[1]


def sounds(x: list[float], gap: float = 0.03) -> list[tuple[int, int]]:
    """(start, end) of the stretches separated by at least ``gap`` s of exact silence."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    zeros = 0
    for i, v in enumerate(x):
        if v != 0.0:
            zeros = 0
            start = i if start is None else start
            continue
        zeros += 1
        if zeros == int(gap * SAMPLE_RATE) and start is not None:
            out.append((start, i - zeros + 1))
            start = None
    if start is not None:
        out.append((start, len(x)))
    return out


def test_voices_differ_in_pitch_and_pitch_falls_across_a_sentence() -> None:
    n = int(0.05 * SAMPLE_RATE)
    start = int(0.02 * SAMPLE_RATE)
    low = pitch(samples(speak("ah", "S1"))[start : start + n])
    high = pitch(samples(speak("ah", "S2"))[start : start + n])
    assert 95 < low < 150
    assert 190 < high < 260

    x = samples(speak("ah ah ah ah ah ah ah ah", "S1"))
    words = sounds(x)
    assert len(words) == 8
    f0 = [pitch(x[a + start : a + start + n]) for a, _ in words]
    assert f0[-1] < 0.85 * f0[0]


def test_pauses_grow_from_words_to_commas_to_sentences() -> None:
    def gap(text: str) -> float:
        x = samples(speak(text))
        return longest_silence(x[: sounds(x)[-1][1]])  # not the pause after the last word

    word, comma, sentence = gap("ah ah"), gap("ah, ah"), gap("ah. ah")
    assert 0.05 < word < 0.08
    assert 0.18 < comma < 0.23
    assert 0.32 < sentence < 0.40


@pytest.mark.parametrize("speed", [0.5, 2.0, 4.0])
def test_speed_scales_duration(speed: float) -> None:
    text = "Speed changes how long this sentence takes."
    normal = len(speak(text))
    assert len(speak(text, speed=speed)) == pytest.approx(normal / speed, rel=0.05)


def test_words_without_vowels_and_other_scripts_still_sound() -> None:
    for text in ("42 hmm", "Привет мир", "日本語です"):
        x = samples(speak(text))
        assert max(abs(v) for v in x) > 0.1


def test_punctuation_only_text_is_silent_but_short() -> None:
    assert speak("...") == b""


@pytest.mark.parametrize(("voice", "speed"), [("S3", 1.0), ("s1", 1.0), ("S1", 0.2), ("S1", 5.0)])
def test_bad_voice_or_speed_is_refused_before_any_work(voice: str, speed: float) -> None:
    sleeps: list[float] = []
    with pytest.raises(ValueError, match=r"voice must be|speed must be"):
        SyntheticSource(sleep=sleeps.append).generate("Hi.", voice, speed)
    assert sleeps == []


def test_speed_true_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="speed"):
        synthesize("Hi.", "S1", True)


# --- synthetic: pacing ------------------------------------------------------------------


def test_pacing_sleeps_first_latency_then_rtf_times_audio() -> None:
    events: list[tuple[str, float]] = []
    source = SyntheticSource(0.4, 0.15, sleep=lambda s: events.append(("sleep", s)))
    total = 0
    for chunk in source.generate("Pacing follows the audio duration. Yes.", "S2", 1.0):
        events.append(("chunk", len(chunk)))
        total += len(chunk)
    assert events[0] == ("sleep", 0.15)
    assert events[1][0] == "chunk" or events[2][0] == "chunk"
    slept = [value for kind, value in events if kind == "sleep"]
    assert sum(slept) == pytest.approx(0.15 + 0.4 * duration(total), abs=1e-9)
    # Slices of at least 5 ms, except the remainder paid after the last chunk.
    assert all(s >= 0.005 for s in slept[:-1])
    assert sum(1 for kind, _ in events if kind == "chunk") > 20


def test_zero_pacing_never_sleeps() -> None:
    sleeps: list[float] = []
    chunks = list(SyntheticSource(0.0, 0.0, sleep=sleeps.append).generate("Hi.", "S1", 1.0))
    assert chunks and sleeps == []


def test_negative_pacing_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        SyntheticSource(real_time_factor=-1)


def test_close_stops_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    converted: list[int] = []
    real = float_to_pcm16

    def counting(xs: list[float]) -> bytes:
        converted.append(len(xs))
        return real(xs)

    monkeypatch.setattr(voice_synth, "float_to_pcm16", counting)
    sleeps: list[float] = []
    text = "This is a long text that would take many seconds to speak. " * 20
    stream = SyntheticSource(sleep=sleeps.append).generate(text, "S1", 1.0)
    assert isinstance(stream, Generator)
    next(stream)
    done_at_close = (len(converted), len(sleeps))
    stream.close()
    assert (len(converted), len(sleeps)) == done_at_close
    assert next(stream, None) is None
    # Far less than the whole text was synthesised: work is produced on demand.
    assert len(converted) < 10


def test_synthetic_is_a_source() -> None:
    source: Source = load_source("synthetic", sleep=lambda s: None)
    assert source.name == "synthetic"
    assert isinstance(source, SyntheticSource)


# --- Dia (the real model's tests are in test_dia.py) ------------------------------------


def test_dia_without_torch_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "diaproto.apps.serve.sources.dia.model", raising=False)
    monkeypatch.setitem(sys.modules, "transformers", None)  # the import fails
    with pytest.raises(SourceUnavailable) as info:
        load_source("dia")
    message = str(info.value)
    assert "pip install 'diaproto[dia]'" in message
    assert "GPU" in message
    assert isinstance(info.value, RuntimeError)


def test_unknown_source_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="dia, synthetic"):
        load_source("piper")
