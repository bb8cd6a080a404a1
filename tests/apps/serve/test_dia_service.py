"""The service with the real Dia code path (tiny random-weight model) over every transport.

Each test holds the model at step ``K + R + 16`` and must receive the first audio while it
is held: proof by step count that the service streams from the first decodable frame. Then
it lets the model finish and checks the whole stream against one whole-sequence decode
(within 1 LSB), with independent clients: websockets, httpx-sse, openai, the MCP SDK.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import wave
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
import torch
from httpx_sse import connect_sse
from mcp import Client
from mcp_types import AudioContent
from server_fixture import RunningServer, running_server
from support import records
from tiny_dia import EOS, StepCounter, StepGate, add_logits_processor
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from diaproto.apps.serve.model_queue import ModelQueue
from diaproto.apps.serve.sources.dia.model import TransformersDiaSource
from diaproto.apps.serve.sources.dia.random_weights import tiny_dia
from diaproto.apps.serve.sources.dia.tensor_audio import pcm16

STEPS = 60
OPTIONS: dict[str, object] = {"max_new_tokens": STEPS, "do_sample": False, "suppress_tokens": [EOS]}
FRAMES = STEPS - 16
FRAME_BYTES = 1024
LIMIT = 60.0


def reference(voice: str, text: str = "Hello there.") -> torch.Tensor:
    """One generate, then one whole-sequence decode: what the stream must equal."""
    model, processor = tiny_dia()
    inputs = processor(text=[f"[{voice}] {text}"], padding=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, **OPTIONS)
    return samples(pcm16(processor.batch_decode(out)[0]))


def samples(pcm: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(pcm), dtype=torch.int16).to(torch.int32)


def assert_equal_within_one_lsb(pcm: bytes, voice: str) -> None:
    got, want = samples(pcm), reference(voice)
    assert got.shape == want.shape == (FRAMES * 512,)
    assert int((got - want).abs().max()) <= 1


class Held:
    """The service on the tiny model, with generation held after the first chunk's steps."""

    def __init__(self, server: RunningServer, source: TransformersDiaSource, gate: StepGate):
        self.server = server
        self.source = source
        self.gate = gate
        self.first_chunk = source.plan.first.frames * FRAME_BYTES

    def assert_held(self) -> None:
        """The model is waiting at step K + R + 16: the audio so far needed K + R + 15."""
        assert self.gate.holding.wait(LIMIT)
        assert self.gate.calls == self.source.first_chunk_steps + 1


@pytest.fixture
def held() -> Iterator[Held]:
    model, processor = tiny_dia()
    source = TransformersDiaSource(model, processor, generate_options=OPTIONS)
    gate = StepGate(hold_at=source.first_chunk_steps + 1)
    add_logits_processor(model, gate)
    with running_server(source) as server:
        try:
            yield Held(server, source, gate)
        finally:
            gate.release()  # before the server stops, so its generation can end


def test_websocket_streams_from_the_first_decodable_frame(held: Held) -> None:
    with connect(held.server.ws_url, subprotocols=[Subprotocol("diaproto.v1")], proxy=None) as ws:
        ws.send(json.dumps({"type": "open", "stream": 1, "text": "Hello there.", "voice": "S1"}))
        audio = bytearray()
        end = None
        for _ in range(10_000):
            message = ws.recv(timeout=LIMIT)
            if isinstance(message, str):
                control = json.loads(message)
                assert control["type"] != "error", control
                if control["type"] == "end":
                    end = control
                    break
                continue
            for stream, _seq, payload in records(message):
                assert stream == 1
                audio += payload
            if len(audio) == held.first_chunk:
                held.assert_held()
                held.gate.release()
    assert end is not None
    assert_equal_within_one_lsb(bytes(audio), "S1")


def test_sse_streams_from_the_first_decodable_frame(held: Held) -> None:
    audio = bytearray()
    url = f"{held.server.url}/v1/stream"
    with (
        httpx.Client(trust_env=False, timeout=LIMIT) as client,
        connect_sse(client, "GET", url, params={"text": "Hello there.", "voice": "S2"}) as events,
    ):
        for event in events.iter_sse():
            if event.event == "data":
                audio += base64.b64decode(event.data)
                if len(audio) == held.first_chunk:
                    held.assert_held()
                    held.gate.release()
            elif event.event in ("end", "error"):
                assert event.event == "end", event.data
                break
    assert_equal_within_one_lsb(bytes(audio), "S2")


def test_openai_speech_streams_from_the_first_decodable_frame(held: Held) -> None:
    audio = bytearray()
    client = openai.OpenAI(
        base_url=f"{held.server.url}/v1", api_key="-", max_retries=0, timeout=LIMIT
    )
    with (
        client,
        client.audio.speech.with_streaming_response.create(
            model="tts-1",
            voice="alloy",
            input="Hello there.",
            response_format="pcm",
            extra_body={"sample_rate": 44100},  # the model's own samples, as they come
        ) as response,
    ):
        for data in response.iter_bytes(chunk_size=FRAME_BYTES):
            audio += data
            if len(audio) == held.first_chunk:
                held.assert_held()
                held.gate.release()
    assert_equal_within_one_lsb(bytes(audio), "S2")  # alloy is S2


def test_mcp_speak_streams_from_the_first_decodable_frame(held: Held) -> None:
    reports: list[float] = []

    async def main() -> Any:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            reports.append(progress)
            if len(reports) == 1:
                await anyio.to_thread.run_sync(held.assert_held)
                held.gate.release()

        with anyio.fail_after(LIMIT):
            async with Client(f"{held.server.url}/mcp") as client:
                return await client.call_tool(
                    "speak", {"text": "Hello there.", "voice": "S1"}, progress_callback=on_progress
                )

    result = anyio.run(main)
    assert 0 < reports[0] <= held.first_chunk / 2 / 44100  # reported while the model was held
    audio = result.content[0]
    assert isinstance(audio, AudioContent)
    with wave.open(io.BytesIO(base64.b64decode(audio.data))) as wav:
        pcm = wav.readframes(wav.getnframes())
    assert_equal_within_one_lsb(pcm, "S1")


def test_a_full_model_refuses_new_requests_and_finishes_the_admitted_one() -> None:
    """max_requests=1: while a three-sentence stream is in progress (held in its first
    sentence), new requests get 503 / busy before anything is sent, and the admitted stream
    still gets every sentence, each queueing again for the model."""
    model, processor = tiny_dia()
    queue = ModelQueue(max_requests=1)
    source = TransformersDiaSource(model, processor, model_queue=queue, generate_options=OPTIONS)
    gate = StepGate(hold_at=source.first_chunk_steps + 1)
    add_logits_processor(model, gate)
    with (
        running_server(source) as server,
        connect(server.ws_url, subprotocols=[Subprotocol("diaproto.v1")], proxy=None) as ws,
        httpx.Client(trust_env=False, timeout=LIMIT) as http,
    ):
        try:
            text = "One. Two. Three."
            ws.send(json.dumps({"type": "open", "stream": 1, "text": text, "voice": "S1"}))
            assert gate.holding.wait(LIMIT)
            speech = http.post(
                f"{server.url}/v1/audio/speech",
                json={"model": "tts-1", "voice": "alloy", "input": "Hi."},
            )
            assert speech.status_code == 503
            assert speech.headers["retry-after"] == "1"
            assert "busy" in speech.json()["error"]["message"]
            sse = http.get(
                f"{server.url}/v1/stream",
                params={"text": "Hi."},
                headers={"accept": "text/event-stream"},
            )
            assert sse.status_code == 503
            ws.send(json.dumps({"type": "open", "stream": 3, "text": "Hi.", "voice": "S1"}))
            health = http.get(f"{server.url}/healthz").text
            expected = "model dia: 1 running, 0 waiting, 1 in progress (limit 1), 3 refused"
            assert health == f"ok\n{expected}\n"
            metrics = http.get(f"{server.url}/metrics").text
            assert "diaproto_model_requests 1.0" in metrics
            assert "diaproto_model_refused_total 3.0" in metrics
        finally:
            gate.release()
        audio = bytearray()
        busy = None
        for _ in range(10_000):
            message = ws.recv(timeout=LIMIT)
            if isinstance(message, bytes):
                audio += b"".join(payload for _stream, _seq, payload in records(message))
                continue
            control = json.loads(message)
            if control["type"] == "error":
                busy = control
            elif control["type"] == "end":
                break
    assert busy is not None and (busy["stream"], busy["code"]) == (3, "busy")
    assert len(audio) == 3 * FRAMES * FRAME_BYTES
    assert queue.stats().admitted == 0


def test_cancel_over_websocket_stops_the_model() -> None:
    model, processor = tiny_dia()
    counter = StepCounter()
    add_logits_processor(model, counter)
    long = {**OPTIONS, "max_new_tokens": 3000}
    source = TransformersDiaSource(model, processor, generate_options=long)
    with (
        running_server(source) as server,
        connect(server.ws_url, subprotocols=[Subprotocol("diaproto.v1")], proxy=None) as ws,
    ):
        ws.send(json.dumps({"type": "open", "stream": 1, "text": "Hello there.", "voice": "S1"}))
        while not isinstance(ws.recv(timeout=LIMIT), bytes):
            pass  # the open acknowledgement, then the first audio
        ws.send(json.dumps({"type": "cancel", "stream": 1}))
        # The request's admission closes when its worker has ended (and joined the model's).
        pause = threading.Event()
        for _ in range(int(LIMIT / 0.05)):
            if source.model_queue.stats().admitted == 0:
                break
            pause.wait(0.05)
        assert source.model_queue.stats().admitted == 0
        assert server.call(lambda: server.service.generations.running_workers) == 0
        stopped_at = counter.steps
        assert stopped_at < 3000
        assert source.model_queue.stats().running == 0
        assert not [t for t in threading.enumerate() if t.name == "dia-generate"]
        assert counter.steps == stopped_at
