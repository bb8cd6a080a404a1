"""OpenAI's speech API through the official ``openai`` client: every format, speed, keys, CORS.

Each format is decoded by a decoder other than the encoder's own where one exists
(libsndfile for mp3, Ogg Opus and WAV; dr_flac for FLAC; AAC's ADTS frames are counted from
their headers, and its samples decoded by FFmpeg, the one AAC decoder at hand), then checked
for its rate, its duration and its content: the loudness envelope of the decoded audio must
follow the synthetic voice's own, 20 ms by 20 ms.
"""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import Iterator
from typing import Any

import av
import httpx
import miniaudio
import numpy as np
import openai
import pytest
import soundfile
from server_fixture import SUBPROTOCOL, RunningServer, running_server
from support import POLL_LIMIT, synthetic_audio
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from diaproto.apps.serve.encoding import SpeechEncoder
from diaproto.mcp import McpHttpConfig
from diaproto.mcp.http import LOOPBACK_HOSTS

TEXT = "Hello there. This is a short test of streaming speech, in every format."
SOURCE_RATE = 44100
ENVELOPE_SECONDS = 0.02
API_KEY = "sk-test-key"
APP_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=POLL_LIMIT
    ) as client:
        yield client


def speech(client: openai.OpenAI, **options: Any) -> tuple[str, bytes]:
    """(content type, body) of one request, read as a stream."""
    request: dict[str, Any] = {"model": "tts-1", "voice": "alloy", "input": TEXT, **options}
    with client.audio.speech.with_streaming_response.create(**request) as response:
        return response.headers["content-type"], b"".join(response.iter_bytes())


def reference(speed: float = 1.0) -> np.ndarray:
    """The synthetic voice's own samples (S2 is alloy's), as floats at 44.1 kHz."""
    pcm = synthetic_audio(TEXT, "S2", speed)
    samples: np.ndarray = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    return samples


def envelope(samples: np.ndarray, rate: int) -> np.ndarray:
    window = int(rate * ENVELOPE_SECONDS)
    whole = len(samples) // window * window
    power: np.ndarray = (samples[:whole].reshape(-1, window) ** 2).mean(axis=1)
    rms: np.ndarray = np.sqrt(power)
    return rms


def assert_same_speech(decoded: np.ndarray, rate: int, speed: float = 1.0) -> None:
    """The decoded audio lasts as long as the voice's (codecs pad by tens of ms) and its
    envelope follows the voice's at the best alignment within 200 ms."""
    expected = reference(speed)
    seconds, expected_seconds = len(decoded) / rate, len(expected) / SOURCE_RATE
    assert abs(seconds - expected_seconds) < 0.15, (seconds, expected_seconds)
    ours, theirs = envelope(decoded, rate), envelope(expected, SOURCE_RATE)
    best = -1.0
    for lag in range(0, 11):
        n = min(len(ours) - lag, len(theirs))
        best = max(best, float(np.corrcoef(ours[lag : lag + n], theirs[:n])[0, 1]))
    assert best > 0.9, best


def adts_frames(data: bytes) -> tuple[int, int]:
    """(frames, sample rate) by walking ADTS headers: 1,024 samples per AAC frame."""
    rates = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
    count, at, rate = 0, 0, 0
    while at < len(data):
        header = data[at : at + 7]
        assert header[0] == 0xFF and header[1] & 0xF6 == 0xF0, f"no ADTS sync at {at}"
        rate = rates[(header[2] >> 2) & 0x0F]
        length = ((header[3] & 0x03) << 11) | (header[4] << 3) | (header[5] >> 5)
        assert length > 7
        at, count = at + length, count + 1
    assert at == len(data)
    return count, rate


def decode_with_ffmpeg(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), mode="r") as container:
        return np.concatenate(
            [frame.to_ndarray()[0] for frame in container.decode(audio=0)]
        ).astype(np.float64)


# --- every format OpenAI documents --------------------------------------------------------------


def test_mp3_is_the_default_as_in_openai_quickstart(client: openai.OpenAI) -> None:
    content_type, body = speech(client)  # no response_format: OpenAI's default is mp3
    assert content_type == "audio/mpeg"
    samples, rate = soundfile.read(io.BytesIO(body), dtype="float64")
    assert rate == 24000
    assert_same_speech(samples, rate)
    also = miniaudio.mp3_read_f32(body)  # dr_mp3, a second decoder
    assert abs(also.num_frames - len(samples)) <= 1152


def test_opus_in_ogg(client: openai.OpenAI) -> None:
    content_type, body = speech(client, response_format="opus")
    assert content_type == "audio/ogg; codecs=opus"
    assert body.startswith(b"OggS")
    samples, rate = soundfile.read(io.BytesIO(body), dtype="float64")
    assert rate == 48000
    assert_same_speech(samples, rate)


def test_aac_in_adts(client: openai.OpenAI) -> None:
    content_type, body = speech(client, response_format="aac")
    assert content_type == "audio/aac"
    frames, rate = adts_frames(body)
    assert rate == 24000
    expected = len(reference()) / SOURCE_RATE
    assert abs(frames * 1024 / rate - expected) < 0.15  # the headers' own count
    assert_same_speech(decode_with_ffmpeg(body), rate)


def test_flac(client: openai.OpenAI) -> None:
    content_type, body = speech(client, response_format="flac")
    assert content_type == "audio/flac"
    assert body.startswith(b"fLaC")
    decoded = miniaudio.flac_read_f32(body)
    assert decoded.sample_rate == 24000
    assert_same_speech(np.asarray(decoded.samples, dtype=np.float64), decoded.sample_rate)


def test_wav_at_openai_rate(client: openai.OpenAI) -> None:
    content_type, body = speech(client, response_format="wav")
    assert content_type == "audio/wav"
    with wave.open(io.BytesIO(body)) as wav:  # a streaming header: sizes unknown, read to end
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
    samples, rate = soundfile.read(io.BytesIO(body), dtype="float64")
    assert rate == 24000
    assert_same_speech(samples, rate)


def test_pcm_is_24_khz_like_openai(client: openai.OpenAI) -> None:
    content_type, body = speech(client, response_format="pcm")
    assert content_type == "audio/pcm"
    samples = np.frombuffer(body, dtype="<i2").astype(np.float64) / 32768
    assert_same_speech(samples, 24000)
    # Resampled, not decimated: 24/44.1 of the samples, to within the resampler's edge.
    assert abs(len(samples) - len(reference()) * 24000 / SOURCE_RATE) <= 64


def test_pcm_at_the_models_own_rate_is_the_voice_itself(client: openai.OpenAI) -> None:
    _, body = speech(client, response_format="pcm", extra_body={"sample_rate": 44100})
    assert body == synthetic_audio(TEXT, "S2")


def test_sse_deltas_carry_the_format(client: openai.OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts",
        voice="alloy",
        input=TEXT,
        response_format="mp3",
        stream_format="sse",
    ) as response:
        events = [
            json.loads(line.removeprefix("data:"))
            for line in response.iter_lines()
            if line.startswith("data:")
        ]
    assert events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="float64")
    assert_same_speech(samples, rate)


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_speed_changes_the_pace(client: openai.OpenAI, speed: float) -> None:
    _, body = speech(client, response_format="flac", speed=speed)
    decoded = miniaudio.flac_read_f32(body)
    assert_same_speech(
        np.asarray(decoded.samples, dtype=np.float64), decoded.sample_rate, speed=speed
    )


def test_a_bad_field_is_named_in_param(client: openai.OpenAI) -> None:
    for options, param in (
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": 9}, "speed"),
        ({"voice": "nobody"}, "voice"),
        ({"response_format": "mp3", "extra_body": {"sample_rate": 44100}}, "sample_rate"),
        ({"response_format": "pcm", "extra_body": {"sample_rate": 12345}}, "sample_rate"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            speech(client, **options)
        body = caught.value.body
        assert isinstance(body, dict)
        assert body["param"] == param, (options, body)


def test_the_encoder_sends_nothing_before_the_first_chunk_and_finishes_once() -> None:
    encoder = SpeechEncoder("opus")
    head = encoder.encode(b"")
    assert head.startswith(b"OggS")  # the container's header, before any audio
    assert encoder.encode(b"") == b""
    encoder.finish()
    with pytest.raises(ValueError, match="24000 Hz only"):
        SpeechEncoder("mp3", 44100)
    with pytest.raises(ValueError, match="response_format"):
        SpeechEncoder("ogg")


# --- API keys and CORS ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    config = McpHttpConfig(allowed_hosts=LOOPBACK_HOSTS, allowed_origins=(APP_ORIGIN,))
    with running_server(mcp_config=config, api_keys=("old-key", API_KEY)) as running:
        yield running


def test_api_keys_guard_the_api(keyed: RunningServer) -> None:
    with (
        openai.OpenAI(
            base_url=keyed.url + "/v1", api_key="wrong", max_retries=0, timeout=POLL_LIMIT
        ) as wrong,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        speech(wrong, response_format="pcm")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "invalid_api_key"
    assert caught.value.response.headers["www-authenticate"].startswith("Bearer")
    for key in (API_KEY, "old-key"):  # either of two keys: one can be rotated out
        with openai.OpenAI(
            base_url=keyed.url + "/v1", api_key=key, max_retries=0, timeout=POLL_LIMIT
        ) as right:
            assert speech(right, response_format="pcm")[1]
    stream = httpx.get(keyed.url + "/v1/stream", params={"text": "Hi."}, timeout=POLL_LIMIT)
    assert stream.status_code == 401
    assert httpx.get(keyed.url + "/healthz", timeout=POLL_LIMIT).status_code == 200


def test_the_websocket_needs_the_key_too(keyed: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as caught:
        connect(keyed.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=POLL_LIMIT)
    assert caught.value.response.status_code == 401
    with connect(
        keyed.ws_url,
        subprotocols=[SUBPROTOCOL],
        additional_headers={"Authorization": f"Bearer {API_KEY}"},
        open_timeout=POLL_LIMIT,
    ) as ws:
        assert ws.subprotocol == SUBPROTOCOL


def test_cors_preflight_and_answer_for_an_allowed_page(keyed: RunningServer) -> None:
    asked = "authorization, content-type, x-stainless-os"
    preflight = httpx.options(
        keyed.url + "/v1/audio/speech",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": asked,
        },
        timeout=POLL_LIMIT,
    )
    assert preflight.status_code == 200  # no key on a preflight: browsers never send one
    assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
    assert preflight.headers["access-control-allow-headers"] == asked
    assert "POST" in preflight.headers["access-control-allow-methods"]
    answer = httpx.post(
        keyed.url + "/v1/audio/speech",
        headers={"Origin": APP_ORIGIN, "Authorization": f"Bearer {API_KEY}"},
        json={"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": "pcm"},
        timeout=POLL_LIMIT,
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    refused = httpx.post(
        keyed.url + "/v1/audio/speech",
        headers={"Origin": APP_ORIGIN},
        json={"model": "tts-1", "voice": "alloy", "input": "Hi."},
        timeout=POLL_LIMIT,
    )
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == APP_ORIGIN  # readable by the page


def test_a_page_from_elsewhere_gets_no_cors(keyed: RunningServer) -> None:
    preflight = httpx.options(
        keyed.url + "/v1/audio/speech",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=POLL_LIMIT,
    )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize("response_format", ["pcm", "flac"])
def test_a_sample_cut_between_chunks_is_joined_and_a_closed_encoder_is_silent(
    response_format: str,
) -> None:
    pcm = synthetic_audio("Hi.", "S1")[:20_001]  # an odd length: the last byte waits
    whole, cut = SpeechEncoder(response_format), SpeechEncoder(response_format)
    at_once = whole.encode(pcm) + whole.finish()
    pieces = [pcm[i : i + 1023] for i in range(0, len(pcm), 1023)]  # odd-sized chunks
    in_pieces = b"".join(cut.encode(piece) for piece in pieces) + cut.finish()
    assert in_pieces == at_once
    assert cut.finish() == b"" and cut.encode(pcm) == b""  # once, then nothing
    closed = SpeechEncoder(response_format)
    closed.encode(pcm[:4000])
    closed.close()
    assert closed.encode(pcm) == b"" and closed.finish() == b""
