"""``python -m benchmarks.speech_formats [--seconds 20] [--rounds 5]``

What each of the speech API's formats costs the server and holds back: the synthetic voice's
audio (44.1 kHz PCM) is fed to :class:`SpeechEncoder` one 1,024-byte chunk at a time, as a
response is made. Per format:

- **CPU per audio second**: process time to resample and encode, over the audio's duration
  (median over rounds). 10 ms per second is 1% of a core per listening client.
- **held before the first audio**: the audio fed before the encoder gave any byte past the
  container's header: what the codec itself holds back (its frame and look-ahead).
- **bytes per audio second**: the response's size rate.

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

from diaproto.apps.serve.audio import FRAME_BYTES, SAMPLE_RATE, SAMPLE_WIDTH
from diaproto.apps.serve.encoding import RESPONSE_FORMATS, SpeechEncoder
from diaproto.apps.serve.sources import synthesize

TEXT = "The quick brown fox jumps over the lazy dog. " * 8


def voice(seconds: float) -> bytes:
    """At least ``seconds`` of the synthetic voice, cut to that length."""
    pcm = bytearray()
    want = int(seconds * SAMPLE_RATE) * SAMPLE_WIDTH
    while len(pcm) < want:
        pcm += b"".join(synthesize(TEXT, "S1"))
    return bytes(pcm[:want])


def one_round(response_format: str, pcm: bytes) -> tuple[float, float, int]:
    """(process seconds, seconds of audio fed before the first audio byte, bytes out)."""
    encoder = SpeechEncoder(response_format)
    header = len(encoder.encode(b""))
    out, held = header, None
    began = time.process_time()
    for start in range(0, len(pcm), FRAME_BYTES):
        out += len(encoder.encode(pcm[start : start + FRAME_BYTES]))
        if held is None and out > header:
            held = (start + FRAME_BYTES) / SAMPLE_WIDTH / SAMPLE_RATE
    out += len(encoder.finish())
    return time.process_time() - began, held if held is not None else float("nan"), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speech_formats")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    pcm = voice(args.seconds)
    print(
        "| format | CPU per audio second | held before the first audio | bytes per audio second |"
    )
    print("|---|---|---|---|")
    for response_format in RESPONSE_FORMATS:
        rounds = [one_round(response_format, pcm) for _ in range(args.rounds)]
        cpu = statistics.median(r[0] for r in rounds) / args.seconds
        held, size = rounds[0][1], rounds[0][2] / args.seconds
        print(f"| {response_format} | {cpu * 1000:.2f} ms | {held * 1000:.0f} ms | {size:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
