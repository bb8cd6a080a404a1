"""The real Dia model, streamed frame by frame through Hugging Face transformers.

``generate`` runs on a worker thread with a streamer that receives each step's 9 codebook
tokens and a stopping criterion that ends the run within one step when the request goes away.
The consumer (the generator :meth:`TransformersDiaSource.generate` returns) undoes the delay
pattern as steps arrive, decodes DAC windows as soon as their look-ahead exists (see
:mod:`.frames`), converts to PCM on the tensor and yields 512-sample frames: the first
audio leaves after ``K + R + 15`` steps instead of after the whole text.

Turns at the model go through a :class:`~diaproto.apps.serve.model_queue.ModelQueue` (one
generation at a time, first come first served). A paused client holds only its own consumer:
its ``generate`` runs to the end of the current text batch (the codes wait in memory, under
1 KB a step), then the model goes to the next request in line.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
from transformers import DiaForConditionalGeneration, DiaProcessor, StoppingCriteriaList

from diaproto.apps.serve.audio import FRAME_SAMPLES, SAMPLE_RATE
from diaproto.apps.serve.model_queue import Admission, ModelQueue
from diaproto.apps.serve.sources.dia.frames import Undelay, Window, WindowPlan
from diaproto.apps.serve.sources.dia.steps import (
    CancelOnEvent,
    EndOfSteps,
    StepStreamer,
    log_unread_errors,
)
from diaproto.apps.serve.sources.dia.tensor_audio import pcm16
from diaproto.apps.serve.sources.dia.text_batches import MAX_CHARS_PER_CALL, tagged_batches
from diaproto.apps.serve.sources.source import SourceUnavailable, check_voice_and_speed, framed
from diaproto.apps.serve.tempo import Tempo

log = logging.getLogger("diaproto.serve.dia")

DIA_MODEL_NAME = "nari-labs/Dia-1.6B-0626"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ChunkReady:
    """What an observer hears when a chunk of audio leaves the source."""

    steps: int  # generation steps consumed so far in this text batch
    window: Window


class TransformersDiaSource:
    """Dia through transformers: a :class:`~diaproto.apps.serve.sources.Source` that streams
    as it generates."""

    name: str = "dia"

    def __init__(
        self,
        model: DiaForConditionalGeneration,
        processor: DiaProcessor,
        *,
        plan: WindowPlan | None = None,
        model_queue: ModelQueue | None = None,
        max_chars_per_call: int = MAX_CHARS_PER_CALL,
        generate_options: Mapping[str, object] | None = None,
        observer: Callable[[ChunkReady], None] | None = None,
    ) -> None:
        # transformers' own annotations are loose (configs typed as optional or dicts), so
        # the objects are handled as Any past this point.
        self.model = cast(Any, model)
        self.processor = cast(Any, processor)
        self.dac: Any = self.processor.audio_tokenizer
        dac_config = self.dac.config
        hop = math.prod(dac_config.downsampling_ratios)
        if hop != FRAME_SAMPLES or dac_config.sampling_rate != SAMPLE_RATE:
            raise ValueError(
                f"the audio codec makes {hop} samples a frame at {dac_config.sampling_rate} Hz; "
                f"the service streams {FRAME_SAMPLES} at {SAMPLE_RATE} Hz (Dia's DAC 44 kHz)"
            )
        self.delays = [int(d) for d in self.model.config.delay_pattern]
        self.eos_token = int(self.model.config.decoder_config.eos_token_id)
        self.plan = plan or WindowPlan()
        self.model_queue = model_queue or ModelQueue()
        self.max_chars_per_call = max_chars_per_call
        self.generate_options: dict[str, object] = dict(generate_options or {})
        self.observer = observer

    @property
    def first_chunk_steps(self) -> int:
        """Steps of generation before the first audio can leave (``K + R + max(delay)``)."""
        return self.plan.first_chunk_steps(max(self.delays))

    def generate(
        self,
        text: str,
        voice: str,
        speed: float,
        *,
        stop: threading.Event | None = None,
        admission: Admission | None = None,
    ) -> Generator[bytes, None, None]:
        """PCM s16le chunks of one frame each (at speed 1) for ``text``, as Dia makes them.

        Setting ``stop`` ends the model's run at the end of its current step (or takes the
        request out of the model's line) and the iteration with it, nothing more decoded.
        Without an ``admission`` the call takes its own (:class:`ModelBusy` if the model
        has as many requests as it takes), at the first ``next``.
        """
        check_voice_and_speed(voice, speed)
        batches = tagged_batches(text, voice, self.max_chars_per_call)
        return framed(self._pcm(batches, speed, stop or threading.Event(), admission))

    def _pcm(
        self,
        batches: list[str],
        speed: float,
        stop: threading.Event,
        admission: Admission | None,
    ) -> Generator[bytes, None, None]:
        with self._admitted(admission) as place:
            tempo = Tempo(speed)  # pitch kept, as OpenAI's speed means
            for batch in batches:
                if stop.is_set():
                    return
                chunks = self.stream_batch(batch, stop, place)
                try:
                    for audio in chunks:
                        yield tempo.push(pcm16(audio))
                finally:
                    chunks.close()
            if stop.is_set():
                return
            tail = tempo.finish()
            if tail:
                yield tail

    @contextmanager
    def _admitted(self, admission: Admission | None) -> Iterator[Admission]:
        """``admission``, or one of this call's own (closed when the call ends)."""
        if admission is not None:
            yield admission
            return
        with self.model_queue.admit() as own:
            yield own

    def stream_batch(
        self,
        text: str,
        stop: threading.Event | None = None,
        admission: Admission | None = None,
    ) -> Generator[torch.Tensor, None, None]:
        """Float audio of one generation, a chunk at a time; closing it, or setting
        ``stop``, stops the model."""
        with self._admitted(admission) as place:
            yield from self._stream_batch(text, stop or threading.Event(), place)

    def _stream_batch(
        self, text: str, stop: threading.Event, admission: Admission
    ) -> Generator[torch.Tensor, None, None]:
        inputs = self.processor(text=[text], padding=False, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        steps = StepStreamer(len(self.delays))
        cancel = threading.Event()
        ticket = admission.join()
        criteria = StoppingCriteriaList([CancelOnEvent(cancel, stop)])

        def work() -> None:
            try:
                if ticket.wait(stop):
                    with torch.inference_mode():
                        self.model.generate(
                            **inputs,
                            streamer=steps,
                            stopping_criteria=criteria,
                            **self.generate_options,
                        )
            except BaseException as exc:  # surfaced to the consumer
                steps.rows.put(exc)
            finally:
                ticket.release()
                steps.end()

        worker = threading.Thread(target=work, name="dia-generate", daemon=True)
        try:
            worker.start()
            yield from self._windows(steps, stop)
        finally:
            cancel.set()  # the model stops at the end of its current step
            ticket.withdraw()  # or leaves the line if its turn has not come
            if worker.ident is not None:
                worker.join()
            ticket.release()  # the worker's own release, unless it never started
            log_unread_errors(steps)

    def _windows(self, steps: StepStreamer, stop: threading.Event) -> Iterator[torch.Tensor]:
        undelay = Undelay(self.delays, self.eos_token)
        sent = 0
        consumed = 0
        while True:
            item = steps.rows.get()
            if isinstance(item, BaseException):
                raise RuntimeError(f"Dia generation failed: {item}") from item
            if isinstance(item, list):
                consumed += 1
                undelay.push(item)
            if stop.is_set():
                return  # asked to stop: decode nothing more
            final = isinstance(item, EndOfSteps) or undelay.ended
            while (
                window := self.plan.next_window(sent, len(undelay.frames), final=final)
            ) is not None:
                audio = self.decode(undelay.frames, window)
                sent = window.keep_stop
                if self.observer is not None:
                    self.observer(ChunkReady(consumed, window))
                yield audio
            if final:
                return

    def decode(self, frames: list[list[int]], window: Window) -> torch.Tensor:
        """The audio of ``window``'s kept frames, decoded with its context."""
        codes = torch.tensor(frames[window.start : window.stop], dtype=torch.long)
        codes = codes.T.unsqueeze(0).to(self.dac.device)  # (1, channels, frames)
        with torch.inference_mode():
            audio: torch.Tensor = self.dac.decode(audio_codes=codes).audio_values.reshape(-1)
        offset = window.keep_start - window.start
        return audio[offset * FRAME_SAMPLES : (offset + window.kept) * FRAME_SAMPLES]


def load_transformers_dia(
    weights: str = DIA_MODEL_NAME,
    *,
    device: str | None = None,
    dtype: str | None = None,
    **options: Any,
) -> TransformersDiaSource:
    """Dia and its DAC codec from a Hugging Face id or a local directory.

    ``device`` defaults to CUDA when there is one; ``dtype`` to bfloat16 there and float32 on
    the CPU. The codec stays in float32 (its cost is small, its precision audible).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    try:
        processor: Any = DiaProcessor.from_pretrained(weights)
        model: Any = DiaForConditionalGeneration.from_pretrained(weights, dtype=DTYPES[dtype])
        model = model.to(device).eval()
        processor.audio_tokenizer.to(device).eval()
    except Exception as exc:
        raise SourceUnavailable(
            f"could not load Dia from {weights!r} on {device}: {exc}. The weights come from "
            "the Hugging Face Hub (network needed on first use, then cached) or a local "
            "directory saved with save_pretrained."
        ) from exc
    log.info("Dia loaded from %s on %s (%s)", weights, device, dtype)
    return TransformersDiaSource(model, processor, **options)
