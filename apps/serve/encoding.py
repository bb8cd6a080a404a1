"""OpenAI's speech formats, encoded as the audio is made: mp3, opus, aac, flac, wav and pcm.

Every source yields PCM s16le at 44.1 kHz mono. A :class:`SpeechEncoder` resamples it to the
response's rate with FFmpeg's swresample (a windowed-sinc resampler that holds back well
under a millisecond, where soxr's streaming mode held back 46 ms here) and encodes it with
FFmpeg's encoders through PyAV (LAME for mp3, libopus in Ogg, FFmpeg's AAC in ADTS, FLAC).
Each call returns the bytes ready so far, so a response streams at the codec's own pace: the
container's header leaves at once, audio as soon as the encoder has a packet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

import av
import numpy as np

from diaproto.apps.serve.audio import SAMPLE_RATE, wav_header

# OpenAI's speech API answers at 24 kHz (its pcm is "24 kHz, 16-bit signed, little-endian").
OPENAI_SAMPLE_RATE: Final = 24000
# What ``sample_rate`` (our extension) may ask of the raw formats; 44100 is the model's own.
RAW_SAMPLE_RATES: Final = (8000, 16000, 22050, 24000, 44100, 48000)
RAW_FORMATS: Final = ("pcm", "wav")


@dataclass(frozen=True)
class Codec:
    """How one response format is made: FFmpeg's encoder, muxer and their options."""

    encoder: str
    muxer: str
    sample_rate: int
    media_type: str
    bit_rate: int | None = None
    muxer_options: Mapping[str, str] = field(default_factory=dict)
    encoder_options: Mapping[str, str] = field(default_factory=dict)


CODECS: Final[Mapping[str, Codec]] = {
    # A bare MPEG audio stream: no ID3 tag, no Xing frame (its counts are unknown until the
    # end, and a stream cannot go back to write them).
    "mp3": Codec(
        "libmp3lame",
        "mp3",
        OPENAI_SAMPLE_RATE,
        "audio/mpeg",
        bit_rate=64_000,
        muxer_options={"id3v2_version": "0", "write_xing": "0", "write_id3v1": "0"},
    ),
    # Ogg pages of 20 ms (the muxer's default of one second would hold audio back).
    "opus": Codec(
        "libopus",
        "ogg",
        48000,
        "audio/ogg; codecs=opus",
        bit_rate=32_000,
        muxer_options={"page_duration": "20000"},
        encoder_options={"application": "voip"},
    ),
    # The fast coder: 13 ms of CPU per audio second here, where the default (twoloop) took 54.
    "aac": Codec(
        "aac",
        "adts",
        OPENAI_SAMPLE_RATE,
        "audio/aac",
        bit_rate=64_000,
        encoder_options={"aac_coder": "fast"},
    ),
    # 576-sample blocks (24 ms) instead of 2304: the first packet leaves four times sooner.
    "flac": Codec(
        "flac", "flac", OPENAI_SAMPLE_RATE, "audio/flac", encoder_options={"frame_size": "576"}
    ),
}
RESPONSE_FORMATS: Final = ("mp3", "opus", "aac", "flac", "wav", "pcm")
RAW_MEDIA_TYPES: Final = {"wav": "audio/wav", "pcm": "audio/pcm"}


def media_type(response_format: str) -> str:
    """The Content-Type of a response in ``response_format``."""
    if response_format in RAW_MEDIA_TYPES:
        return RAW_MEDIA_TYPES[response_format]
    return CODECS[response_format].media_type


class _Output:
    """Where the muxer writes: a buffer drained after each call (no ``seek``, so the muxer
    never goes back to patch what already left)."""

    def __init__(self) -> None:
        self.pending = bytearray()

    def write(self, data: bytes) -> int:
        self.pending += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self.pending)
        self.pending.clear()
        return data


class SpeechEncoder:
    """PCM s16le 44.1 kHz mono in, ``response_format`` out, a chunk at a time.

    ``encode`` gives what a chunk of PCM makes ready, the first time after what precedes any
    audio (a WAV header, a container's header); ``finish`` gives the rest, once.
    """

    def __init__(self, response_format: str, sample_rate: int | None = None) -> None:
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}")
        self.response_format = response_format
        codec = CODECS.get(response_format)
        if sample_rate is not None and codec is not None and sample_rate != codec.sample_rate:
            raise ValueError(f"{response_format} is made at {codec.sample_rate} Hz only")
        rate = sample_rate or (codec.sample_rate if codec else OPENAI_SAMPLE_RATE)
        self.sample_rate = rate
        self.media_type = media_type(response_format)
        self._resampler = (
            None
            if rate == SAMPLE_RATE
            else av.AudioResampler(format="s16", layout="mono", rate=rate)
        )
        self._pts = 0  # input samples so far: each frame's place in the source's time
        self._output = _Output()
        self._started = False
        self._done = False  # finished or closed: nothing more comes out
        self._odd = b""  # a byte of a sample cut in two by a source's chunking
        self._container: av.container.OutputContainer | None = None
        self._stream: av.audio.stream.AudioStream | None = None
        if codec is not None:
            self._open(codec)

    def _open(self, codec: Codec) -> None:
        container = av.open(
            self._output,
            mode="w",
            format=codec.muxer,
            options={"flush_packets": "1", **codec.muxer_options},
            buffer_size=4096,
        )
        stream = container.add_stream(codec.encoder, rate=codec.sample_rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        if codec.bit_rate is not None:
            stream.bit_rate = codec.bit_rate
        stream.options = dict(codec.encoder_options)
        self._container, self._stream = container, stream

    def _start(self) -> bytes:
        """What precedes the audio (a WAV header, a container's header), the first time."""
        if self._started:
            return b""
        self._started = True
        if self.response_format == "wav":
            return wav_header(sample_rate=self.sample_rate)
        if self._container is not None:
            self._container.start_encoding()
        return self._output.take()

    def encode(self, pcm: bytes) -> bytes:
        """The response's bytes that ``pcm`` makes ready (a sample cut at its end waits for
        its other byte)."""
        if self._done:
            return b""
        header = self._start()
        pcm = self._odd + pcm
        whole = len(pcm) - len(pcm) % 2
        self._odd = pcm[whole:]
        if not whole:
            return header
        samples = np.frombuffer(pcm, dtype="<i2", count=whole // 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = Fraction(1, SAMPLE_RATE)
        frame.pts = self._pts
        self._pts += samples.shape[1]
        frames = [frame] if self._resampler is None else self._resampler.resample(frame)
        return header + self._encode(frames)

    def finish(self) -> bytes:
        """The audio the resampler and the encoder still hold, and the container's trailer;
        once (then nothing)."""
        if self._done:
            return b""
        header = self._start()
        frames = [] if self._resampler is None else self._resampler.resample(None)
        out = header + self._encode(frames)
        self._done = True
        if self._container is None or self._stream is None:
            return out
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return out + self._output.take()

    def close(self) -> None:
        """Free the encoder without finishing (the response was abandoned)."""
        self._done = True
        if self._container is not None:
            self._container.close()
            self._container = None
            self._output.take()

    def _encode(self, frames: list[av.AudioFrame]) -> bytes:
        if self._container is None or self._stream is None:
            return b"".join(bytes(frame.planes[0])[: frame.samples * 2] for frame in frames)
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._output.take()
