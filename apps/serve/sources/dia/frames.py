"""From Dia's generation steps to decodable audio frames, and which frames to decode when.

Pure bookkeeping (no torch): :class:`Undelay` undoes Dia's delay pattern one step at a time,
:class:`WindowPlan` says which window of frames the DAC decoder should turn into audio next.

Dia generates 9 codebook tokens per step, channel ``c`` delayed by ``delay[c]`` steps (the
pattern ``[0, 8, 9, ..., 15]``). So audio frame ``f`` is ``rows[f + delay[c]][c]`` for each
channel: frame 0 is whole after step 16, then one more frame per step. Channel 0 saying EOS at
step ``s`` ends the audio at frame ``s - 1``; the model then spends ``max(delay)`` more steps
finishing the delayed channels, which complete the last frames.

The DAC decoder is not causal (about +-10 frames of receptive field), so a chunk of ``K``
frames is decoded together with ``L`` frames of left context and ``R`` of look-ahead and only
its middle is kept: with ``L, R >= 10`` the result equals a whole-sequence decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The receptive field of DAC's decoder, in frames: context at least this wide on both sides
# makes a window decode equal to the whole-sequence decode for any weights.
EXACT_CONTEXT = 10


class Undelay:
    """Rows of generated tokens in (one per step), whole audio frames out."""

    def __init__(self, delays: Sequence[int], eos_token: int) -> None:
        if not delays or min(delays) < 0:
            raise ValueError(f"delays must be non-negative offsets, got {list(delays)!r}")
        self.delays = tuple(delays)
        self.max_delay = max(self.delays)
        self.eos_token = eos_token
        self.rows: list[Sequence[int]] = []
        self.frames: list[list[int]] = []
        self.ended = False  # channel 0 said EOS: no frame after it belongs to the audio

    @property
    def channels(self) -> int:
        return len(self.delays)

    def push(self, row: Sequence[int]) -> int:
        """Add one step's tokens; returns how many frames became whole (0 or 1)."""
        if len(row) != self.channels:
            raise ValueError(f"a step has {self.channels} tokens, got {len(row)}")
        self.rows.append(row)
        index = len(self.frames)
        if self.ended or len(self.rows) <= index + self.max_delay:
            return 0
        if self.rows[index][0] == self.eos_token:
            self.ended = True
            return 0
        rows = self.rows
        self.frames.append([rows[index + d][c] for c, d in enumerate(self.delays)])
        return 1


@dataclass(frozen=True)
class ChunkShape:
    """How many frames a chunk keeps (``frames``) and how far past it the decoder looks."""

    frames: int
    lookahead: int

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"a chunk keeps at least one frame, got {self.frames}")
        if self.lookahead < 0:
            raise ValueError(f"lookahead must not be negative, got {self.lookahead}")


@dataclass(frozen=True)
class Window:
    """Decode frames ``[start, stop)``; keep the audio of frames ``[keep_start, keep_stop)``."""

    start: int
    keep_start: int
    keep_stop: int
    stop: int

    @property
    def kept(self) -> int:
        return self.keep_stop - self.keep_start


@dataclass(frozen=True)
class WindowPlan:
    """A small first chunk for early audio, larger ones after it to decode less often.

    The defaults are exact (context >= :data:`EXACT_CONTEXT` on both sides) and make the first
    chunk leave after ``4 + 10 + 15`` = 29 steps.
    """

    first: ChunkShape = ChunkShape(frames=4, lookahead=EXACT_CONTEXT)
    steady: ChunkShape = ChunkShape(frames=16, lookahead=EXACT_CONTEXT)
    left_context: int = 12

    def __post_init__(self) -> None:
        if self.left_context < 0:
            raise ValueError(f"left_context must not be negative, got {self.left_context}")

    @property
    def exact(self) -> bool:
        """True when every window has context enough to equal a whole-sequence decode."""
        return min(self.first.lookahead, self.steady.lookahead, self.left_context) >= (
            EXACT_CONTEXT
        )

    def first_chunk_steps(self, max_delay: int) -> int:
        """Generation steps before the first chunk can be decoded (``K + R + max_delay``)."""
        return self.first.frames + self.first.lookahead + max_delay

    def next_window(self, sent: int, available: int, *, final: bool) -> Window | None:
        """The next window to decode once ``sent`` frames are out and ``available`` exist.

        Before the end a chunk waits for its look-ahead; at the end (``final``) the frames
        left are decoded with whatever follows them, a chunk at a time.
        """
        shape = self.first if sent == 0 else self.steady
        if final:
            if available <= sent:
                return None
            keep_stop = min(available, sent + shape.frames)
            return Window(max(0, sent - self.left_context), sent, keep_stop, available)
        keep_stop = sent + shape.frames
        stop = keep_stop + shape.lookahead
        if available < stop:
            return None
        return Window(max(0, sent - self.left_context), sent, keep_stop, stop)

    @classmethod
    def parse(cls, text: str) -> WindowPlan:
        """``"K0:R0,K:R,L"`` (first chunk, later chunks, left context), e.g. ``"4:10,16:10,12"``."""
        try:
            first, steady, left = (part.strip() for part in text.split(","))
            k0, r0 = (int(v) for v in first.split(":"))
            k, r = (int(v) for v in steady.split(":"))
            return cls(ChunkShape(k0, r0), ChunkShape(k, r), int(left))
        except ValueError as exc:
            raise ValueError(
                f"a window plan is 'K0:R0,K:R,L' (first chunk frames:look-ahead, later chunk "
                f"frames:look-ahead, left context), e.g. '4:10,16:10,12'; got {text!r} ({exc})"
            ) from exc
