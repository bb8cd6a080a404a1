"""The real Dia code path (transformers), streamed, on a tiny random-weight model on the CPU.

Equalities and step counts only: the codes streamed equal what ``batch_decode`` gives DAC,
the PCM equals one whole-sequence decode within 1 LSB, the first chunk leaves after exactly
``K + R + 15`` steps, a close stops the model, the end of a generation is where Dia puts it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from support import wait_until
from tiny_dia import EOS, EosAt, StepCounter, StepGate, add_logits_processor, save_tiny_dia

from diaproto.apps.serve.model_queue import ModelBusy, ModelQueue
from diaproto.apps.serve.sources import SourceUnavailable, load_source
from diaproto.apps.serve.sources.dia.frames import ChunkShape, Undelay, WindowPlan
from diaproto.apps.serve.sources.dia.model import ChunkReady, TransformersDiaSource
from diaproto.apps.serve.sources.dia.random_weights import tiny_dia
from diaproto.apps.serve.sources.dia.steps import StepStreamer
from diaproto.apps.serve.sources.dia.tensor_audio import pcm16
from diaproto.apps.serve.sources.dia.text_batches import tagged_batches

STEPS = 120  # frames = STEPS - 16 when nothing says EOS
GREEDY: dict[str, object] = {"max_new_tokens": STEPS, "do_sample": False, "suppress_tokens": [EOS]}
TEXT = "[S1] Hello there."
WAIT = 60.0


def samples(pcm: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(pcm), dtype=torch.int16).to(torch.int32)


def whole_decode(model: Any, processor: Any, text: str, **options: Any) -> bytes:
    """The way without streaming: one generate, then batch_decode (one DAC decode)."""
    inputs = processor(text=[text], padding=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, **options)
    return pcm16(processor.batch_decode(out)[0])


def test_streamed_frames_equal_the_codes_batch_decode_gives_the_codec() -> None:
    model, processor = tiny_dia()
    streamer = StepStreamer(channels=9)
    inputs = processor(text=[TEXT], padding=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, streamer=streamer, **GREEDY)
    undelay = Undelay(model.config.delay_pattern, EOS)
    while isinstance(item := streamer.rows.get_nowait(), list):
        undelay.push(item)
    seen: list[torch.Tensor] = []
    codec_decode = processor.audio_tokenizer.decode

    def spy(audio_codes: torch.Tensor, **kwargs: Any) -> Any:
        seen.append(audio_codes)
        return codec_decode(audio_codes=audio_codes, **kwargs)

    processor.audio_tokenizer.decode = spy
    processor.batch_decode(out)
    assert len(seen) == 1
    assert len(undelay.frames) == STEPS - 16
    assert seen[0][0].T.tolist() == undelay.frames


@pytest.mark.parametrize("plan", ["4:10,16:10,12", "8:12,8:12,12", "1:10,24:11,10"])
def test_streamed_pcm_equals_one_whole_sequence_decode(plan: str) -> None:
    model, processor = tiny_dia()
    source = TransformersDiaSource(
        model, processor, plan=WindowPlan.parse(plan), generate_options=GREEDY
    )
    chunks = list(source.generate("Hello there.", "S1", 1.0))
    reference = samples(whole_decode(model, processor, TEXT, **GREEDY))
    streamed = samples(b"".join(chunks))
    assert {len(chunk) for chunk in chunks} == {1024}  # one Dia frame = one wire frame
    assert len(chunks) == STEPS - 16
    assert streamed.shape == reference.shape
    assert int((streamed - reference).abs().max()) <= 1
    assert int(reference.abs().max()) > 100  # not silence


@pytest.mark.parametrize(("first", "steady"), [((4, 10), (16, 10)), ((8, 12), (8, 12))])
def test_the_first_chunk_leaves_after_exactly_k_plus_r_plus_15_steps(
    first: tuple[int, int], steady: tuple[int, int]
) -> None:
    model, processor = tiny_dia()
    events: list[ChunkReady] = []
    plan = WindowPlan(ChunkShape(*first), ChunkShape(*steady), left_context=12)
    source = TransformersDiaSource(
        model, processor, plan=plan, generate_options=GREEDY, observer=events.append
    )
    list(source.generate("Hello there.", "S1", 1.0))
    k0, r0 = first
    k, r = steady
    assert source.first_chunk_steps == k0 + r0 + 15
    assert events[0].steps == k0 + r0 + 15
    assert events[0].window.kept == k0
    # Then one chunk every K steps, until the end flushes the rest.
    full = [e for e in events if e.window.stop - e.window.keep_stop == r]
    for n, event in enumerate(full[1:], start=1):
        assert event.steps == k0 + 15 + n * k + r
    assert sum(e.window.kept for e in events) == STEPS - 16


def test_closing_after_the_first_chunk_stops_the_model() -> None:
    model, processor = tiny_dia()
    counter = StepCounter()
    add_logits_processor(model, counter)
    long = {**GREEDY, "max_new_tokens": 3000}
    source = TransformersDiaSource(model, processor, generate_options=long)
    stream = source.generate("Hello there. How are you today?", "S1", 1.0)
    assert len(next(stream)) == 1024
    stream.close()  # joins the worker, which stops at the end of its current step
    assert not [t for t in threading.enumerate() if t.name == "dia-generate"]
    stopped_at = counter.steps
    assert stopped_at < 3000
    assert source.model_queue.stats().running == 0
    assert counter.steps == stopped_at  # nothing runs any more


def test_the_audio_ends_where_channel_zero_says_eos() -> None:
    model, processor = tiny_dia()
    eos = EosAt(step=40)
    add_logits_processor(model, eos)
    options = {"max_new_tokens": STEPS, "do_sample": False}
    source = TransformersDiaSource(model, processor, generate_options=options)
    chunks = list(source.generate("Hello there.", "S1", 1.0))
    assert len(chunks) == 39  # frames 0..38; step 40's frame is the EOS
    assert eos.calls == 40 + 15  # Dia's tail completes the delayed channels, then stops
    eos.calls = 0
    assert (
        samples(b"".join(chunks)).shape
        == samples(whole_decode(model, processor, TEXT, **options)).shape
    )


def test_max_length_ends_with_the_eos_tail() -> None:
    model, processor = tiny_dia()
    source = TransformersDiaSource(
        model, processor, generate_options={**GREEDY, "max_new_tokens": 40}
    )
    assert len(list(source.generate("Hi.", "S2", 1.0))) == 40 - 16


def test_several_batches_carry_the_speaker_and_stream_one_after_another() -> None:
    assert tagged_batches("One. Two. [S2] Three. Four.", "S1", max_chars=12) == [
        "[S1] One. Two.",
        "[S2] Three.",
        "[S2] Four.",
    ]
    model, processor = tiny_dia()
    events: list[ChunkReady] = []
    source = TransformersDiaSource(
        model,
        processor,
        max_chars_per_call=5,
        generate_options={**GREEDY, "max_new_tokens": 40},
        observer=events.append,
    )
    chunks = list(source.generate("One. Two.", "S1", 1.0))
    assert len(chunks) == 2 * (40 - 16)
    starts = [e.steps for e in events if e.window.keep_start == 0]
    assert starts == [source.first_chunk_steps] * 2  # each batch streams from its own start


@pytest.mark.parametrize("speed", [0.5, 1.3, 2.0])
def test_speed_changes_the_pace_of_the_stream(speed: float) -> None:
    """The model's own audio (at speed 1) through the tempo filter: the streamed length is
    the whole length over ``speed`` (within the filter's window)."""
    model, processor = tiny_dia()
    source = TransformersDiaSource(model, processor, generate_options=GREEDY)
    streamed = samples(b"".join(source.generate("Hello there.", "S1", speed)))
    at_speed_one = (STEPS - 16) * 512
    assert abs(streamed.shape[0] - at_speed_one / speed) <= 0.05 * at_speed_one / speed


def test_pcm_conversion_clips_and_silences_nan() -> None:
    values = torch.tensor([0.0, 1.0, -1.0, 2.0, -3.0, float("nan"), 0.5])
    assert samples(pcm16(values)).tolist() == [0, 32767, -32767, 32767, -32767, 0, 16384]


def test_a_paused_stream_gives_the_model_back_after_its_batch() -> None:
    """A held consumer does not hold the model: its generate finishes the text batch (codes
    wait in memory), then the next request in line runs to completion."""
    model, processor = tiny_dia()
    source = TransformersDiaSource(
        model, processor, generate_options={**GREEDY, "max_new_tokens": 60}
    )
    paused = source.generate("Hello there.", "S1", 1.0)
    first = next(paused)  # the client takes one chunk and stops reading
    wait_until(
        lambda: source.model_queue.stats().running == 0, "the model is given back", limit=WAIT
    )
    other = list(source.generate("Hi.", "S2", 1.0))
    assert len(other) == 60 - 16
    rest = list(paused)  # the paused client resumes and loses nothing
    assert len([first, *rest]) == 60 - 16


def test_a_full_model_refuses_with_a_clear_error() -> None:
    model, processor = tiny_dia()
    queue = ModelQueue(max_requests=1)
    source = TransformersDiaSource(
        model, processor, model_queue=queue, generate_options={**GREEDY, "max_new_tokens": 40}
    )
    holder = queue.admit()  # someone else's request is in progress, and it takes one
    with pytest.raises(ModelBusy, match="busy"):
        next(source.generate("Hi.", "S1", 1.0))
    holder.close()
    assert len(list(source.generate("Hi.", "S1", 1.0))) == 40 - 16
    assert queue.stats().admitted == 0  # the call's own admission closed with it


def test_an_admitted_request_is_never_refused_halfway() -> None:
    """Each sentence queues again for the model, but the bound was checked at admission."""
    model, processor = tiny_dia()
    queue = ModelQueue(max_requests=1)
    source = TransformersDiaSource(
        model,
        processor,
        model_queue=queue,
        max_chars_per_call=6,
        generate_options={**GREEDY, "max_new_tokens": 40},
    )
    admission = queue.admit()
    stream = source.generate("One. Two. Three.", "S1", 1.0, admission=admission)
    first = next(stream)
    with pytest.raises(ModelBusy):
        queue.admit()  # the model takes no one else meanwhile...
    rest = list(stream)  # ...and this one gets all three of its turns
    assert len([first, *rest]) == 3 * (40 - 16)
    assert queue.stats().served == 3
    assert queue.stats().admitted == 1  # the caller's admission is the caller's to close
    admission.close()


def test_a_model_error_reaches_the_consumer() -> None:
    model, processor = tiny_dia()
    source = TransformersDiaSource(
        model, processor, generate_options={"max_new_tokens": 40, "no_such_option": 1}
    )
    with pytest.raises(RuntimeError, match="Dia generation failed"):
        list(source.generate("Hi.", "S1", 1.0))
    assert source.model_queue.stats().running == 0


def test_load_from_a_local_directory(tmp_path: Path) -> None:
    save_tiny_dia(tmp_path)
    source = load_source(
        "dia",
        weights=str(tmp_path),
        device="cpu",
        generate_options={**GREEDY, "max_new_tokens": 40},
    )
    model, processor = tiny_dia()
    reference = whole_decode(model, processor, "[S1] Hi.", **{**GREEDY, "max_new_tokens": 40})
    assert b"".join(source.generate("Hi.", "S1", 1.0)) == reference


def test_load_failure_names_the_weights(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="could not load Dia from"):
        load_source("dia", weights=str(tmp_path / "missing"), device="cpu")


def test_the_codec_must_have_dia_geometry() -> None:
    model, processor = tiny_dia()
    processor.audio_tokenizer.config.sampling_rate = 24000
    with pytest.raises(ValueError, match="44100 Hz"):
        TransformersDiaSource(model, processor)


def test_a_stop_signal_ends_the_model_within_one_step() -> None:
    """The manager's stop (the last listener cancelled) reaches the model from another thread,
    while the consumer may be blocked waiting for the next window."""
    model, processor = tiny_dia()
    gate = StepGate(hold_at=40)
    add_logits_processor(model, gate)
    source = TransformersDiaSource(
        model, processor, generate_options={**GREEDY, "max_new_tokens": 3000}
    )
    stop = threading.Event()
    stream = source.generate("Hello there.", "S1", 1.0, stop=stop)
    try:
        assert len(next(stream)) == 1024
        assert gate.holding.wait(WAIT)  # the model is inside step 40
        stop.set()
    finally:
        gate.release()
    rest = list(stream)  # ends by itself: no close needed
    assert gate.calls == 40  # step 40 was the last one
    # Nothing was decoded after the stop: what follows is the rest of the first chunk.
    assert len(rest) == source.plan.first.frames - 1
    assert not [t for t in threading.enumerate() if t.name == "dia-generate"]


def test_a_stop_signal_takes_a_waiting_request_out_of_the_line() -> None:
    model, processor = tiny_dia()
    source = TransformersDiaSource(model, processor, generate_options=GREEDY)
    holder = source.model_queue.admit().join()  # another request holds the model
    stop = threading.Event()
    stream = source.generate("Hello there.", "S1", 1.0, stop=stop)
    result: list[list[bytes]] = []
    reader = threading.Thread(target=lambda: result.append(list(stream)))
    reader.start()
    wait_until(
        lambda: source.model_queue.stats().waiting == 1, "the request waits in line", limit=WAIT
    )
    stop.set()
    reader.join(WAIT)
    assert result == [[]]
    assert source.model_queue.stats().waiting == 0
    holder.release()


def test_long_sentences_are_cut_at_spaces_and_nothing_is_dropped() -> None:
    words = [f"word{i}" for i in range(800)]  # 6,000 characters with no sentence end
    batches = tagged_batches(" ".join(words), "S1")
    assert all(len(b) <= 305 and b.startswith("[S1] ") for b in batches)
    assert " ".join(b.removeprefix("[S1] ") for b in batches).split() == words
    wide = tagged_batches("é" * 700, "S2")  # 2 bytes a character: cut by bytes, in a word
    assert all(len(b.encode()) <= 1005 for b in wide)
    assert "".join(b.removeprefix("[S2] ") for b in wide) == "é" * 700
