"""The PCM helpers: WAV headers standard readers accept, clipping, framing."""

from __future__ import annotations

import io
import struct
import wave

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaproto.apps.serve.audio import (
    FRAME_BYTES,
    SAMPLE_RATE,
    STREAMING_SIZE,
    duration,
    float_to_pcm16,
    frames,
    wav_header,
)

pcm_bytes = st.binary(max_size=4000).map(lambda b: b[: len(b) - len(b) % 2])


def test_frame_is_one_dac_frame() -> None:
    assert FRAME_BYTES == 512 * 2
    assert duration(FRAME_BYTES) == pytest.approx(512 / 44100)
    assert duration(2 * SAMPLE_RATE) == 1.0


def test_fixed_length_header_fields() -> None:
    header = wav_header(1000)
    assert len(header) == 44
    riff, riff_size, wave_id = struct.unpack_from("<4sI4s", header)
    assert (riff, riff_size, wave_id) == (b"RIFF", 36 + 1000, b"WAVE")
    fmt = struct.unpack_from("<4sIHHIIHH", header, 12)
    assert fmt == (b"fmt ", 16, 1, 1, 44100, 88200, 2, 16)
    assert struct.unpack_from("<4sI", header, 36) == (b"data", 1000)


def test_streaming_header_uses_max_sizes() -> None:
    header = wav_header()
    assert struct.unpack_from("<I", header, 4)[0] == STREAMING_SIZE
    assert struct.unpack_from("<I", header, 40)[0] == STREAMING_SIZE


@pytest.mark.parametrize("bad", [-2, 3, STREAMING_SIZE])
def test_header_refuses_impossible_sizes(bad: int) -> None:
    with pytest.raises(ValueError, match="data_size"):
        wav_header(bad)


def test_header_refuses_bad_format() -> None:
    with pytest.raises(ValueError, match="bits"):
        wav_header(bits=12)
    with pytest.raises(ValueError, match="positive"):
        wav_header(sample_rate=0)


@given(pcm_bytes, st.booleans())
def test_wave_module_reads_back_the_audio(pcm: bytes, streaming: bool) -> None:
    header = wav_header(None if streaming else len(pcm))
    with wave.open(io.BytesIO(header + pcm)) as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == SAMPLE_RATE
        assert reader.readframes(1 << 20) == pcm
        if not streaming:
            assert reader.getnframes() == len(pcm) // 2


def test_stereo_24_bit_header_for_completeness() -> None:
    pcm = bytes(range(12))  # two frames of 2 channels x 3 bytes
    with wave.open(io.BytesIO(wav_header(12, 48000, 2, 24) + pcm)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (
            2,
            3,
            48000,
        )
        assert reader.readframes(10) == pcm


def test_float_to_pcm16_scales_clips_and_is_little_endian() -> None:
    pcm = float_to_pcm16([0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -7.0, float("nan")])
    values = struct.unpack("<8h", pcm)
    assert values == (0, 16384, -16384, 32767, -32767, 32767, -32767, 0)


@given(st.lists(st.floats(allow_nan=False), max_size=200))
def test_float_to_pcm16_never_overflows(samples: list[float]) -> None:
    values = struct.unpack(f"<{len(samples)}h", float_to_pcm16(samples))
    for sample, value in zip(samples, values, strict=True):
        assert -32767 <= value <= 32767
        assert abs(value / 32767 - max(-1.0, min(1.0, sample))) <= 0.5 / 32767 + 1e-12


@given(st.binary(max_size=5000), st.integers(1, 2048))
def test_frames_partition_the_bytes(pcm: bytes, size: int) -> None:
    chunks = list(frames(pcm, size))
    assert b"".join(chunks) == pcm
    assert all(len(c) == size for c in chunks[:-1])
    assert all(0 < len(c) <= size for c in chunks)


def test_frames_default_size_and_bad_size() -> None:
    assert [len(c) for c in frames(bytes(2500))] == [1024, 1024, 452]
    with pytest.raises(ValueError, match="positive"):
        list(frames(b"ab", 0))
