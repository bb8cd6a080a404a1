"""The Dia tools offered over MCP: ``speak`` and ``list_voices``."""

from __future__ import annotations

import json
from typing import Any

from diaproto.apps.serve.requests import (
    MAX_SPEED,
    MIN_SPEED,
    VOICES,
    BadRequest,
    StreamRequest,
    parse_speed,
    parse_text,
    parse_voice,
)
from diaproto.apps.serve.text import MAX_INPUT_CHARS
from diaproto.mcp import Tool

#: Longest text one ``speak`` call takes: the service-wide limit (about four minutes).
MAX_SPEAK_CHARS = MAX_INPUT_CHARS

SPEAK = Tool(
    name="speak",
    title="Speak",
    description=(
        "Speak text with the Dia voice. Audio streams while it is generated: progress "
        "notifications report the seconds generated so far, and a client that declares "
        "SEP-2998's partialResults capability (and sends _meta.partialResultToken) receives "
        "the audio itself as notifications/tools/partial_result (base64 PCM s16le, 44.1 kHz, "
        "mono). The result holds the whole utterance as a WAV file. Tag speakers with [S1] "
        "and [S2]."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "description": "What to say.",
                "minLength": 1,
                "maxLength": MAX_SPEAK_CHARS,
            },
            "voice": {"type": "string", "enum": list(VOICES), "default": "S1"},
            "speed": {
                "type": "number",
                "minimum": MIN_SPEED,
                "maximum": MAX_SPEED,
                "default": 1.0,
            },
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    annotations={"readOnlyHint": True, "openWorldHint": False, "streamingHint": True},
)

LIST_VOICES = Tool(
    name="list_voices",
    title="List voices",
    description="The voices speak accepts.",
    input_schema={"type": "object", "properties": {}, "additionalProperties": False},
)

TOOLS = (SPEAK, LIST_VOICES)

VOICE_DESCRIPTIONS = {
    "S1": "Dia's first speaker (the lower voice)",
    "S2": "Dia's second speaker (the higher voice)",
}


def parse_speak(arguments: dict[str, Any]) -> StreamRequest:
    """The speak arguments as a generation request; BadRequest names what is wrong."""
    unknown = sorted(set(arguments) - {"text", "voice", "speed"})
    if unknown:
        raise BadRequest(f"unknown argument(s): {', '.join(unknown)}", unknown[0])
    text = parse_text(arguments.get("text"))
    if len(text) > MAX_SPEAK_CHARS:
        raise BadRequest(f"text must be at most {MAX_SPEAK_CHARS} characters", "text")
    voice = parse_voice(arguments.get("voice", "S1"))
    speed = parse_speed(arguments.get("speed", 1.0))
    return StreamRequest(text, voice, speed)


def list_voices_result() -> dict[str, Any]:
    voices = [{"id": voice, "description": VOICE_DESCRIPTIONS[voice]} for voice in VOICES]
    return {
        "content": [{"type": "text", "text": json.dumps({"voices": voices})}],
        "structuredContent": {"voices": voices},
        "isError": False,
    }


def error_result(message: str) -> dict[str, Any]:
    """A tool execution error: the model sees it and can correct its call."""
    return {"content": [{"type": "text", "text": message}], "isError": True}
