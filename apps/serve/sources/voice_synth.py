"""A speech-like voice without a model: formant synthesis of a text, deterministic.

Words are cut into syllables at their vowel groups; each vowel is a pitch period whose
harmonics the vowel's first three formants weigh, gliding down the sentence (declination);
consonants are shaped noise (hiss, bursts, breath). Pauses follow words, commas and sentences.
:func:`synthesize` yields the result unpaced, in ``FRAME_BYTES`` chunks.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from diaproto.apps.serve.audio import SAMPLE_RATE, float_to_pcm16
from diaproto.apps.serve.sources.source import check_voice_and_speed, framed
from diaproto.apps.serve.text import SPEAKER_TAG, split_sentences

_PITCH = {"S1": 115.0, "S2": 210.0}
# First three formants (Hz) of the vowels, roughly those of an adult speaker.
_FORMANTS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
    "y": (300.0, 2000.0, 2700.0),
    "n": (250.0, 1100.0, 2500.0),  # nasal murmur for m, n, l, r, w onsets
}
_VOWEL_GROUP = re.compile(r"[aeiouyàáâäåèéêëìíîïòóôöùúûü]+")
_TOKEN = re.compile(r"\[S[12]\]|[^\W_]+(?:'[^\W_]+)*|[,;:]|[.!?…]+")
_ACCENTS = str.maketrans("àáâäåèéêëìíîïòóôöùúûü", "aaaaaeeeeiiiioooouuuu")
_TABLE_SIZE = 1024
_FORMANT_GAINS = (1.0, 0.7, 0.4)
_BANDWIDTHS = (80.0, 100.0, 140.0)
_SIBILANTS = frozenset("szcxj")
_PLOSIVES = frozenset("ptkbdgq")
_SONORANTS = frozenset("mnlrw")
WORD_PAUSE = 0.06
COMMA_PAUSE = 0.20
SENTENCE_PAUSE = 0.35


@dataclass(frozen=True)
class _Syllable:
    onset: str  # consonant letters before the vowel
    vowel: str  # vowel letters (plain a e i o u y)
    coda: str  # consonants after the word's last vowel (empty for other syllables)
    seed: int  # makes the consonant noise differ between words


@dataclass(frozen=True)
class _Word:
    syllables: tuple[_Syllable, ...]
    voice: str
    pause: float  # silence after the word, before speed scaling


def _syllables(word: str, seed: int) -> tuple[_Syllable, ...]:
    low = word.lower()
    groups = list(_VOWEL_GROUP.finditer(low))
    if not groups:
        # Digits, "hmm", non-Latin scripts: one syllable per two characters, vowel by code.
        return tuple(
            _Syllable(low[i], "aeiou"[ord(low[i]) % 5], "", seed + i) for i in range(0, len(low), 2)
        )
    out: list[_Syllable] = []
    start = 0
    for n, group in enumerate(groups):
        coda = low[group.end() :] if n == len(groups) - 1 else ""
        vowel = group.group().translate(_ACCENTS)
        out.append(_Syllable(low[start : group.start()], vowel, coda, seed + n))
        start = group.end()
    return tuple(out)


def _sentence_words(sentence: str, voice: str, index: int) -> tuple[list[_Word], str]:
    """Words of one sentence with the pause after each; returns the voice in force after."""
    words: list[_Word] = []
    for token in _TOKEN.findall(sentence):
        if SPEAKER_TAG.fullmatch(token):
            voice = token[1:3]
        elif token[0] in ",;:":
            if words:
                last = words[-1]
                words[-1] = _Word(last.syllables, last.voice, max(last.pause, COMMA_PAUSE))
        elif token[0] in ".!?…":
            continue
        else:
            seed = zlib.crc32(f"{index}:{len(words)}:{token}:{voice}".encode())
            words.append(_Word(_syllables(token, seed), voice, WORD_PAUSE))
    if words:
        last = words[-1]
        words[-1] = _Word(last.syllables, last.voice, SENTENCE_PAUSE)
    return words, voice


def _wavetable(f0: float, vowel: str) -> list[float]:
    """One pitch period whose harmonics are weighted by the vowel's formants."""
    formants = _FORMANTS.get(vowel, _FORMANTS["a"])
    harmonics: list[tuple[int, float]] = []
    k = 1
    while k * f0 < 4000.0 and k < 40:
        f = k * f0
        resonance = sum(
            amp / (1.0 + ((f - formant) / bandwidth) ** 2)
            for formant, amp, bandwidth in zip(formants, _FORMANT_GAINS, _BANDWIDTHS, strict=True)
        )
        # The glottal source falls with frequency; the formants stand out well above it.
        harmonics.append((k, (0.02 + resonance) / math.sqrt(k)))
        k += 1
    step = 2.0 * math.pi / _TABLE_SIZE
    table = [sum(w * math.sin(h * i * step) for h, w in harmonics) for i in range(_TABLE_SIZE)]
    peak = max(abs(v) for v in table) or 1.0
    return [v / peak for v in table]


def _voiced(
    seconds: float, f_start: float, f_end: float, vowel: str, amplitude: float
) -> list[float]:
    """A vowel (or diphthong) with a pitch glide and an attack/decay envelope."""
    n = max(1, int(seconds * SAMPLE_RATE))
    first = _wavetable(f_start, vowel[0])
    last = _wavetable(f_start, vowel[-1]) if vowel[-1] != vowel[0] else first
    attack = max(1, int(0.012 * SAMPLE_RATE))
    release_start = int(n * 0.65)
    release = max(1, n - release_start)
    out = [0.0] * n
    phase = 0.0
    glide = (f_end - f_start) / n
    inv_rate = 1.0 / SAMPLE_RATE
    for i in range(n):
        phase += (f_start + glide * i) * inv_rate
        phase -= int(phase)
        idx = int(phase * _TABLE_SIZE)
        t = i / n
        sample = first[idx] + (last[idx] - first[idx]) * t
        if i < attack:
            env = i / attack
        elif i >= release_start:
            env = 0.5 + 0.5 * math.cos(math.pi * (i - release_start) / release)
        else:
            env = 1.0
        out[i] = amplitude * env * sample
    return out


def _noise(seconds: float, letters: str, seed: int, amplitude: float) -> list[float]:
    """A consonant: hiss for sibilants, a short burst for plosives, breath otherwise."""
    rng = random.Random(seed)
    n = max(1, int(seconds * SAMPLE_RATE))
    sibilant = bool(_SIBILANTS.intersection(letters))
    out = [0.0] * n
    prev = 0.0
    for i in range(n):
        white = rng.uniform(-1.0, 1.0)
        # A first difference tilts sibilants towards high frequencies; a one-pole low-pass
        # makes the others duller, so the spectrum changes from consonant to consonant.
        value = (white - prev) * 0.5 if sibilant else prev + 0.35 * (white - prev)
        prev = white if sibilant else value
        env = math.sin(math.pi * i / n)
        out[i] = amplitude * env * value
    return out


def _consonant(letters: str, seed: int, f0: float, scale: float) -> list[float]:
    if not letters:
        return []
    first = letters[0]
    if first in _SONORANTS and len(letters) == 1:
        return _voiced(0.045 * scale, f0, f0, "n", 0.18)
    if first in _PLOSIVES:
        # A closure (silence) then a release burst.
        closure = [0.0] * int(0.02 * scale * SAMPLE_RATE)
        return closure + _noise((0.015 + 0.01 * len(letters)) * scale, letters, seed, 0.35)
    return _noise((0.04 + 0.015 * len(letters)) * scale, letters, seed, 0.22)


def _sentence_audio(words: list[_Word], speed: float) -> Iterator[list[float]]:
    scale = 1.0 / speed
    total = sum(len(w.syllables) for w in words)
    position = 0
    for w_index, word in enumerate(words):
        base = _PITCH[word.voice]
        # Each word gets its own small pitch offset, so repeated words still vary.
        jitter = 1.0 + ((word.syllables[0].seed % 17) - 8) / 200.0
        for s_index, syl in enumerate(word.syllables):
            # Declination: pitch falls across the sentence, as in read speech.
            f_start = base * jitter * (1.12 - 0.25 * position / max(1, total - 1))
            f_end = base * jitter * (1.12 - 0.25 * (position + 0.8) / max(1, total - 1))
            last_syllable = w_index == len(words) - 1 and s_index == len(word.syllables) - 1
            vowel_seconds = min(0.2, 0.09 + 0.03 * (len(syl.vowel) - 1))
            if s_index == 0:
                vowel_seconds *= 1.15  # stress the first syllable of each word
            if last_syllable:
                vowel_seconds *= 1.4  # phrase-final lengthening
            amplitude = 0.55 if s_index == 0 else 0.42
            yield _consonant(syl.onset, syl.seed, f_start, scale)
            yield _voiced(vowel_seconds * scale, f_start, f_end, syl.vowel, amplitude)
            if syl.coda:
                yield _consonant(syl.coda, syl.seed + 7919, f_end, scale * 0.8)
            position += 1
        yield [0.0] * int(word.pause * scale * SAMPLE_RATE)


def synthesize(text: str, voice: str, speed: float = 1.0) -> Generator[bytes, None, None]:
    """Deterministic speech-like PCM for ``text``, unpaced, in FRAME_BYTES chunks."""
    check_voice_and_speed(voice, speed)

    def pieces() -> Iterator[bytes]:
        current = voice
        for index, sentence in enumerate(split_sentences(text)):
            words, current = _sentence_words(sentence, current, index)
            for samples in _sentence_audio(words, speed):
                yield float_to_pcm16(samples)

    return framed(pieces())
