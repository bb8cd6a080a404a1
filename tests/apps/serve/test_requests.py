"""Request validation: what every endpoint accepts, and errors that say what is valid."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diaproto.apps.serve.encoding import RESPONSE_FORMATS
from diaproto.apps.serve.requests import (
    MODELS,
    OPENAI_VOICE_ALIASES,
    BadRequest,
    SpeechRequest,
    StreamRequest,
    parse_speech_request,
    parse_stream_json,
    parse_stream_options,
    parse_stream_query,
)
from diaproto.apps.serve.text import MAX_INPUT_CHARS


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_openai_voices_all_map_to_dia_speakers() -> None:
    # The SDK's list (openai.types.audio.speech_create_params.Voice).
    openai_voices = {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova"}
    openai_voices |= {"sage", "shimmer", "verse", "marin", "cedar"}
    assert set(OPENAI_VOICE_ALIASES) == openai_voices
    assert set(OPENAI_VOICE_ALIASES.values()) == {"S1", "S2"}
    assert OPENAI_VOICE_ALIASES["onyx"] == "S1"
    assert OPENAI_VOICE_ALIASES["shimmer"] == "S2"


@pytest.mark.parametrize(
    ("voice", "expected"),
    [(None, "S1"), ("S1", "S1"), ("S2", "S2"), ("s2", "S2"), (" onyx ", "S1"), ("NOVA", "S2")],
)
def test_stream_voice(voice: object, expected: str) -> None:
    assert parse_stream_options(" Hi. ", voice, {}) == StreamRequest("Hi.", expected, 1.0)


@pytest.mark.parametrize(
    ("text", "voice", "options", "message"),
    [
        (None, "S1", {}, "text must be a string"),
        (42, "S1", {}, "text must be a string"),
        ("  \n ", "S1", {}, "text must not be empty"),
        ("x" * (MAX_INPUT_CHARS + 1), "S1", {}, "at most 4096"),
        ("\ud800", "S1", {}, "valid Unicode"),
        ("Hi", "S3", {}, "voice must be S1, S2 or an OpenAI voice .*alloy.*verse"),
        ("Hi", 1, {}, "voice must be"),
        ("Hi", None, {"speed": 0.2}, "speed must be a number from 0.25 to 4.0"),
        ("Hi", None, {"speed": 4.5}, "speed must be a number"),
        ("Hi", None, {"speed": True}, "speed must be a number"),
        ("Hi", None, {"speed": "1.0"}, "speed must be a number"),
        ("Hi", None, {"speed": float("nan")}, "speed must be a number"),
        ("Hi", None, {"speed": 10**400}, "speed must be a number"),
    ],
)
def test_stream_options_refused(
    text: object, voice: object, options: dict[str, object], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_stream_options(text, voice, options)


def test_limits_are_inclusive() -> None:
    assert parse_stream_options("x" * MAX_INPUT_CHARS, None, {"speed": 4}).speed == 4.0
    assert parse_stream_options("x", None, {"speed": 0.25}).speed == 0.25


def test_bad_request_carries_the_field() -> None:
    with pytest.raises(BadRequest) as info:
        parse_stream_options("Hi", None, {"speed": 9})
    assert info.value.field == "speed"
    assert isinstance(info.value, ValueError)


def test_stream_json() -> None:
    assert parse_stream_json(body(text="Hi.", voice="S2", speed=1.5, extra=1)) == StreamRequest(
        "Hi.", "S2", 1.5
    )
    assert parse_stream_json(body(text="Hi.", voice=None, speed=None)) == StreamRequest(
        "Hi.", "S1", 1.0
    )


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[1]", b'"text"', b"\xff\xfe\x00", b"[" * 100_000, b"null"]
)
def test_stream_json_must_be_an_object(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="JSON object"):
        parse_stream_json(raw)


def test_stream_json_missing_text() -> None:
    with pytest.raises(BadRequest, match="text must be a string"):
        parse_stream_json(body(voice="S1"))


def test_stream_query() -> None:
    got = parse_stream_query("/v1/stream?text=Hello%20there.&voice=S2&speed=1.25&x=1")
    assert got == StreamRequest("Hello there.", "S2", 1.25)
    assert parse_stream_query("/v1/stream?text=Hi+you") == StreamRequest("Hi you", "S1", 1.0)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/v1/stream", "text is required"),
        ("/v1/stream?voice=S1", "text is required"),
        ("/v1/stream?text=", "text must not be empty"),
        ("/v1/stream?text=a&text=b", "text must be given once"),
        ("/v1/stream?text=a&speed=fast", "speed must be a number"),
        ("/v1/stream?text=a&speed=1_0", "speed must be a number"),
        ("/v1/stream?text=a&speed=inf", "speed must be a number"),
        ("/v1/stream?text=a&speed=9", "speed must be a number"),
        ("/v1/stream?text=a&voice=", "voice must be"),
        ("/v1/stream?text=%ff", "percent-encoded UTF-8"),
        ("/v1/stream?" + "&".join(f"k{i}=1" for i in range(50)), "too many"),
    ],
)
def test_stream_query_refused(target: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_stream_query(target)


def test_speech_request_defaults() -> None:
    got = parse_speech_request(body(model="tts-1", input=" Hello. ", voice="alloy"))
    assert got == SpeechRequest(model="tts-1", input="Hello.", voice="S2")
    assert got.response_format == "mp3"  # OpenAI's default
    assert got.sample_rate is None  # the format's own rate
    assert got.stream_format == "audio"
    assert got.speed == 1.0
    assert got.stream_request() == StreamRequest("Hello.", "S2", 1.0)


def test_speech_request_full() -> None:
    got = parse_speech_request(
        body(
            model="dia",
            input="Hi.",
            voice={"id": "S2"},
            response_format="pcm",
            speed=0.5,
            stream_format="sse",
            instructions="Speak cheerfully.",
            unknown_future_field=[1, 2],
        )
    )
    assert got == SpeechRequest("dia", "Hi.", "S2", "pcm", 0.5, "sse", "Speak cheerfully.")


@pytest.mark.parametrize("model", MODELS)
def test_every_model_alias_is_accepted(model: str) -> None:
    assert parse_speech_request(body(model=model, input="a", voice="S1")).model == model


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"input": "a", "voice": "S1"}, "model", "model is required: one of dia, tts-1"),
        ({"model": "gpt-4", "input": "a", "voice": "S1"}, "model", "model must be one of dia"),
        ({"model": ["dia"], "input": "a", "voice": "S1"}, "model", "model must be one of"),
        ({"model": "dia", "voice": "S1"}, "input", "input is required"),
        ({"model": "dia", "input": "", "voice": "S1"}, "input", "input must not be empty"),
        ({"model": "dia", "input": "x" * 4097, "voice": "S1"}, "input", "at most 4096"),
        ({"model": "dia", "input": "a"}, "voice", "voice is required: S1, S2 or an OpenAI"),
        ({"model": "dia", "input": "a", "voice": "bob"}, "voice", "voice must be S1, S2"),
        ({"model": "dia", "input": "a", "voice": {"id": "x"}}, "voice", "voice must be"),
        (
            {"model": "dia", "input": "a", "voice": "S1", "response_format": "ogg"},
            "response_format",
            "response_format must be one of mp3, opus, aac, flac, wav, pcm",
        ),
        (
            {"model": "dia", "input": "a", "voice": "S1", "sample_rate": 44100},
            "sample_rate",
            "sample_rate applies to response_format pcm and wav only",
        ),
        (
            {
                "model": "dia",
                "input": "a",
                "voice": "S1",
                "response_format": "wav",
                "sample_rate": True,
            },
            "sample_rate",
            "sample_rate must be one of 8000, 16000",
        ),
        (
            {"model": "dia", "input": "a", "voice": "S1", "stream_format": "chunks"},
            "stream_format",
            "stream_format must be one of audio, sse",
        ),
        ({"model": "dia", "input": "a", "voice": "S1", "speed": 0}, "speed", "0.25 to 4.0"),
        ({"model": "dia", "input": "a", "voice": "S1", "speed": "1"}, "speed", "a number"),
        (
            {"model": "dia", "input": "a", "voice": "S1", "instructions": 3},
            "instructions",
            "instructions must be a string",
        ),
    ],
)
def test_speech_request_errors_name_field_and_values(
    fields: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        parse_speech_request(json.dumps(fields).encode())
    assert info.value.field == field


def test_speech_request_null_optionals_take_defaults() -> None:
    got = parse_speech_request(
        body(model="dia", input="a", voice="S1", response_format=None, speed=None)
    )
    assert (got.response_format, got.speed, got.instructions) == ("mp3", 1.0, None)


def test_the_raw_formats_take_a_sample_rate() -> None:
    got = parse_speech_request(
        body(model="dia", input="a", voice="S1", response_format="pcm", sample_rate=44100)
    )
    assert got.sample_rate == 44100


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


# Recursive JSON is slow to draw on a loaded machine: the check is about the parser, not speed.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["model", "input", "voice", "speed", "response_format", "x"]),
        json_values | st.sampled_from(["dia", "S1", "onyx", "wav", "pcm", 1.0]),
    )
)
def test_speech_request_only_returns_valid_or_raises_bad_request(
    fields: dict[str, object],
) -> None:
    try:
        got = parse_speech_request(json.dumps(fields).encode())
    except BadRequest:
        return
    assert got.model in MODELS
    assert got.voice in ("S1", "S2")
    assert 0.25 <= got.speed <= 4.0
    assert got.response_format in RESPONSE_FORMATS
    assert got.input and len(got.input) <= MAX_INPUT_CHARS


@given(st.binary(max_size=64))
def test_arbitrary_bodies_never_raise_anything_else(raw: bytes) -> None:
    for parse in (parse_stream_json, parse_speech_request):
        with contextlib.suppress(BadRequest):
            parse(raw)


@given(st.text(max_size=40))
def test_arbitrary_query_strings_never_raise_anything_else(query: str) -> None:
    with contextlib.suppress(BadRequest):
        parse_stream_query("/v1/stream?" + query)
