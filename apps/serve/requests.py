"""Validation of streaming requests, shared by the WebSocket, SSE and OpenAI endpoints.

Every error is a :class:`BadRequest` whose message names the field and the valid values,
so it can go to the client as is.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from diaproto.apps.serve.encoding import RAW_FORMATS, RAW_SAMPLE_RATES, RESPONSE_FORMATS
from diaproto.apps.serve.text import MAX_INPUT_CHARS

VOICES = ("S1", "S2")
# OpenAI's built-in voices, mapped onto Dia's two speakers: deeper voices to S1 (Dia's
# lower one in our synthetic source too), brighter ones to S2.
OPENAI_VOICE_ALIASES: Mapping[str, str] = {
    "ash": "S1",
    "ballad": "S1",
    "cedar": "S1",
    "echo": "S1",
    "fable": "S1",
    "onyx": "S1",
    "verse": "S1",
    "alloy": "S2",
    "coral": "S2",
    "marin": "S2",
    "nova": "S2",
    "sage": "S2",
    "shimmer": "S2",
}
# "dia" is ours; the others are OpenAI's model names, accepted so OpenAI clients work as is.
MODELS = ("dia", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")
STREAM_FORMATS = ("audio", "sse")
DEFAULT_RESPONSE_FORMAT = "mp3"  # OpenAI's
MIN_SPEED = 0.25
MAX_SPEED = 4.0
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_VALID_VOICES = "S1, S2 or an OpenAI voice (" + ", ".join(sorted(OPENAI_VOICE_ALIASES)) + ")"


class BadRequest(ValueError):
    """A request the service refuses; the message names the field and the valid values."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class StreamRequest:
    """One text to speak: the same for every endpoint once parsed."""

    text: str
    voice: str  # "S1" or "S2"
    speed: float = 1.0


@dataclass(frozen=True)
class SpeechRequest:
    """OpenAI's ``POST /v1/audio/speech`` body, validated."""

    model: str
    input: str
    voice: str  # resolved to "S1" or "S2"
    response_format: str = DEFAULT_RESPONSE_FORMAT  # one of RESPONSE_FORMATS
    speed: float = 1.0
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = None  # accepted for compatibility; Dia has no such control
    # Our extension: the raw formats' rate (OpenAI's 24 kHz unless asked; 44100 is Dia's own).
    sample_rate: int | None = None

    def stream_request(self) -> StreamRequest:
        """The text, voice and speed to generate."""
        return StreamRequest(self.input, self.voice, self.speed)


def parse_text(text: object, field: str = "text") -> str:
    """A non-empty string of at most MAX_INPUT_CHARS characters, stripped."""
    if not isinstance(text, str):
        raise BadRequest(f"{field} must be a string", field)
    stripped = text.strip()
    if not stripped:
        raise BadRequest(f"{field} must not be empty", field)
    if len(stripped) > MAX_INPUT_CHARS:
        raise BadRequest(
            f"{field} must be at most {MAX_INPUT_CHARS} characters, got {len(stripped)}", field
        )
    try:
        stripped.encode("utf-8")
    except UnicodeEncodeError:
        # JSON can carry lone surrogates ("\ud800"), which no encoder downstream accepts.
        raise BadRequest(f"{field} must be valid Unicode (no lone surrogates)", field) from None
    return stripped


def parse_voice(voice: object, field: str = "voice") -> str:
    """S1, S2 (any case) or an OpenAI voice name (or ``{"id": name}``), as S1 or S2."""
    if isinstance(voice, Mapping) and set(voice) == {"id"}:
        voice = voice["id"]  # OpenAI's custom-voice object form
    if isinstance(voice, str):
        name = voice.strip()
        if name.upper() in VOICES:
            return name.upper()
        if name.lower() in OPENAI_VOICE_ALIASES:
            return OPENAI_VOICE_ALIASES[name.lower()]
    raise BadRequest(f"{field} must be {_VALID_VOICES}", field)


def parse_speed(speed: object, field: str = "speed") -> float:
    """A JSON number (not a bool) in 0.25..4.0."""
    message = f"{field} must be a number from {MIN_SPEED} to {MAX_SPEED}"
    if not isinstance(speed, int | float) or isinstance(speed, bool):
        raise BadRequest(message, field)
    try:
        value = float(speed)
    except OverflowError:  # an int too large for a float
        raise BadRequest(message, field) from None
    if math.isnan(value) or not MIN_SPEED <= value <= MAX_SPEED:
        raise BadRequest(message, field)
    return value


def _query_number(value: str) -> float | str:
    """A plain decimal from a query string as a float; anything else stays a (bad) string."""
    text = value.strip()
    return float(text) if _NUMBER.fullmatch(text) else value


def parse_stream_options(
    text: object, voice: object, options: Mapping[str, object]
) -> StreamRequest:
    """Text, voice (None means S1) and ``options["speed"]`` (default 1.0), validated."""
    speed = options.get("speed")
    return StreamRequest(
        text=parse_text(text),
        voice="S1" if voice is None else parse_voice(voice),
        speed=1.0 if speed is None else parse_speed(speed),
    )


def parse_pace(options: Mapping[str, object]) -> bool:
    """``options["pace"]``: ``"realtime"`` asks the server to send the audio at the pace it
    plays, evenly (a player's choice); absent, as fast as it is made (within credit)."""
    pace = options.get("pace")
    if pace is not None and pace != "realtime":
        raise BadRequest('pace must be "realtime" or absent', "pace")
    return pace == "realtime"


def _json_object(body: bytes) -> Mapping[str, object]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON, bad UTF-8 and over-long integer literals.
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def parse_stream_json(body: bytes) -> StreamRequest:
    """``{"text": ..., "voice": ..., "speed": ...}``; voice and speed may be absent."""
    data = _json_object(body)
    return parse_stream_options(data.get("text"), data.get("voice"), data)


def parse_stream_query(target: str) -> StreamRequest:
    """``/v1/stream?text=...&voice=S1&speed=1.0`` (voice and speed optional)."""
    try:
        query = parse_qs(
            urlsplit(target).query,
            keep_blank_values=True,
            errors="strict",
            max_num_fields=16,
        )
    except UnicodeDecodeError:
        raise BadRequest("the query string must be percent-encoded UTF-8") from None
    except ValueError:  # more than max_num_fields parameters
        raise BadRequest("too many query parameters") from None
    params: dict[str, str] = {}
    for key, values in query.items():
        if len(values) > 1 and key in ("text", "voice", "speed"):
            raise BadRequest(f"{key} must be given once", key)
        params[key] = values[0]
    if "text" not in params:
        raise BadRequest("text is required", "text")
    options: dict[str, object] = {}
    if "speed" in params:
        options["speed"] = _query_number(params["speed"])
    return parse_stream_options(params["text"], params.get("voice"), options)


def _choice(data: Mapping[str, object], field: str, valid: tuple[str, ...], default: str) -> str:
    value = data.get(field, default)
    if value is None:
        value = default
    if value not in valid:
        raise BadRequest(f"{field} must be one of {', '.join(valid)}", field)
    assert isinstance(value, str)
    return value


def parse_speech_request(body: bytes) -> SpeechRequest:
    """OpenAI's speech request; unknown fields are ignored, as OpenAI's clients may add some."""
    data = _json_object(body)
    if "model" not in data:
        raise BadRequest(f"model is required: one of {', '.join(MODELS)}", "model")
    model = data["model"]
    if model not in MODELS:
        raise BadRequest(f"model must be one of {', '.join(MODELS)}", "model")
    assert isinstance(model, str)
    if "input" not in data:
        raise BadRequest("input is required", "input")
    if "voice" not in data:
        raise BadRequest(f"voice is required: {_VALID_VOICES}", "voice")
    response_format = _choice(data, "response_format", RESPONSE_FORMATS, DEFAULT_RESPONSE_FORMAT)
    stream_format = _choice(data, "stream_format", STREAM_FORMATS, "audio")
    speed = data.get("speed")
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest("instructions must be a string", "instructions")
    return SpeechRequest(
        model=model,
        input=parse_text(data["input"], "input"),
        voice=parse_voice(data["voice"]),
        response_format=response_format,
        speed=1.0 if speed is None else parse_speed(speed),
        stream_format="sse" if stream_format == "sse" else "audio",
        instructions=instructions,
        sample_rate=_sample_rate(data.get("sample_rate"), response_format),
    )


def _sample_rate(value: object, response_format: str) -> int | None:
    """``sample_rate`` (absent: the format's own), for the raw formats only."""
    if value is None:
        return None
    rates = ", ".join(map(str, RAW_SAMPLE_RATES))
    if response_format not in RAW_FORMATS:
        raise BadRequest(
            f"sample_rate applies to response_format pcm and wav only (here: {rates})",
            "sample_rate",
        )
    if isinstance(value, bool) or value not in RAW_SAMPLE_RATES:
        raise BadRequest(f"sample_rate must be one of {rates}", "sample_rate")
    assert isinstance(value, int | float)
    return int(value)
