"""A source of your own: ``--model module:attr``, and the LLM example streamed to a client."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llm_speech import (
    LlmSpeechSource,
    delta_text,
    local_chat,
    sentences_as_written,
)
from server_fixture import RunningServer, running_server, ws_connect
from support import POLL_LIMIT, fast_source, receive_stream, recv_json, synthetic_audio
from test_make_run import EXIT_LIMIT, free_port, read_until_url

from diaproto.apps.cli import main
from diaproto.apps.serve.sources import SourceUnavailable, SyntheticSource, load_source

ROOT = Path(__file__).resolve().parents[3]
PROMPT = "Why is the sky blue? Say it in a few words."


def instant_chat(prompt: str) -> Iterator[dict[str, Any]]:
    return local_chat(prompt, token_delay=0)


def answer_sentences(prompt: str) -> list[str]:
    return list(sentences_as_written(delta_text(chunk) for chunk in instant_chat(prompt)))


# --- loading -----------------------------------------------------------------------------------


def test_module_attr_names_a_source_a_class_or_a_factory() -> None:
    assert isinstance(load_source("llm_speech:source"), LlmSpeechSource)
    assert isinstance(load_source("llm_speech:LlmSpeechSource"), LlmSpeechSource)
    built = load_source("support:fast_source")  # a factory
    assert isinstance(built, SyntheticSource)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_here:source", "cannot import no_such_module_here"),
        ("examples.llm_speech:nothing", "has no 'nothing'"),
        ("os:sep", "is not a Source (it lacks name, model_queue, generate)"),
        ("json:dumps", "making the source failed (dumps() missing"),
        ("examples.llm_speech:ANSWER", "is not a Source"),
    ],
)
def test_what_is_not_a_source_is_refused_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(SourceUnavailable, match=re.escape(message)):
        load_source(spec)


def test_the_cli_refuses_a_malformed_model_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--model", "not a spec"])
    assert exit_.value.code == 2
    assert "module:attr" in capsys.readouterr().err
    assert main(["serve", "--model", "no_such_module_here:x"]) == 2
    assert "cannot import no_such_module_here" in capsys.readouterr().err


# --- the LLM example ---------------------------------------------------------------------------


def test_sentences_leave_as_soon_as_they_are_complete() -> None:
    tokens = ["Dr.", " Smith", " went", " home.", " Then", " he", " slept", "."]
    seen: list[tuple[int, str]] = []
    fed = 0

    def deltas() -> Iterator[str]:
        nonlocal fed
        for token in tokens:
            fed += 1
            yield token

    for sentence in sentences_as_written(deltas()):
        seen.append((fed, sentence))
    # "Dr." does not end a sentence; "home." does once "Then" shows a new one began.
    assert seen == [(5, "Dr. Smith went home."), (8, "Then he slept.")]


def test_delta_text_reads_dicts_and_sdk_objects() -> None:
    from openai.types.chat import ChatCompletionChunk  # noqa: PLC0415

    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
        }
    )
    assert delta_text(chunk) == "Hi"
    assert delta_text({"choices": []}) == ""
    assert delta_text({"choices": [{"delta": {}}]}) == ""


@pytest.fixture
def llm_server() -> Iterator[RunningServer]:
    voice = fast_source()
    assert isinstance(voice, SyntheticSource)
    with running_server(LlmSpeechSource(chat=instant_chat, voice=voice)) as server:
        yield server


def test_the_answer_streams_over_websocket_sentence_by_sentence(llm_server: RunningServer) -> None:
    with ws_connect(llm_server) as ws:
        ws.send(json.dumps({"type": "open", "stream": 1, "text": PROMPT, "voice": "S2"}))
        assert recv_json(ws)["type"] == "open"
        seqs, audio, _ = receive_stream(ws, 1)
    assert seqs == list(range(1, len(seqs) + 1))
    # The whole prompt was one turn (whole_text): the answer quotes it, then goes on.
    sentences = answer_sentences(PROMPT)
    assert sentences[0] == f"You asked: {PROMPT.split('?', maxsplit=1)[0]}?"
    assert audio == b"".join(synthetic_audio(sentence, "S2") for sentence in sentences)


def test_serve_model_module_attr_from_the_command_line() -> None:
    port = free_port()
    command = [sys.executable, "-m", "diaproto.apps.cli", "serve", "--port", str(port)]
    command += ["--model", "examples.llm_speech:source"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT
    )
    try:
        url, output = read_until_url(process, port)
        assert "model examples.llm_speech:source" in output
        with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client:
            speech = client.post(
                url + "v1/audio/speech",
                json={"model": "tts-1", "voice": "onyx", "input": "Hi.", "response_format": "pcm"},
            )
        assert speech.status_code == 200
        assert len(speech.content) > 24000  # seconds of an answer, not an error
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=EXIT_LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=EXIT_LIMIT)
        if process.stdout is not None:
            process.stdout.close()
