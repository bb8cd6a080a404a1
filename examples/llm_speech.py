"""Speak an LLM's answer while it is being written: a source of your own for ``diaproto serve``.

The text a client sends is the prompt. The answer streams from a chat model as OpenAI's
``chat.completion.chunk`` objects; each sentence is spoken as soon as its last token arrives,
so the first audio leaves long before the answer is complete. Run it with the page, the
WebSocket and SSE streams and the OpenAI speech API all unchanged::

    diaproto serve --model examples.llm_speech:source

Here a local generator stands in for the chat model, so the example runs offline. To speak a
real model's answer, pass a ``chat`` that returns an OpenAI-compatible stream::

    client = openai.OpenAI(base_url="http://localhost:11434/v1", api_key="-")
    source = LlmSpeechSource(chat=lambda prompt: client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": prompt}], stream=True))
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from diaproto.apps.serve.model_queue import Admission, ModelQueue
from diaproto.apps.serve.sources import SyntheticSource, framed
from diaproto.apps.serve.text import split_sentences

ANSWER = (
    "You asked: {prompt} Here is a short answer, written one token at a time. "
    "Each sentence is spoken as soon as it is complete. The rest is still being written."
)

Chat = Callable[[str], Iterable[Any]]


def local_chat(prompt: str, token_delay: float = 0.01) -> Iterator[dict[str, Any]]:
    """A stand-in for a chat model: the answer as OpenAI's stream chunks, word by word."""
    words = ANSWER.format(prompt=prompt.strip()).split(" ")
    for index, word in enumerate(words):
        time.sleep(token_delay)  # a model's time per token
        content = word if index == 0 else " " + word
        yield {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        }
    yield {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }


def delta_text(chunk: Any) -> str:
    """The text a stream chunk adds, from a dict (raw JSON) or the ``openai`` SDK's object."""
    choices = chunk["choices"] if isinstance(chunk, dict) else chunk.choices
    if not choices:
        return ""
    choice = choices[0]
    delta = choice["delta"] if isinstance(choice, dict) else choice.delta
    content = delta.get("content") if isinstance(delta, dict) else delta.content
    return content or ""


def sentences_as_written(deltas: Iterable[str]) -> Iterator[str]:
    """Whole sentences, each as soon as the text after it shows it is complete."""
    pending = ""
    for delta in deltas:
        pending += delta
        *complete, last = split_sentences(pending) or [""]
        # The last piece may still grow ("Mr." then " Smith"): keep it until more follows.
        yield from complete
        pending = last + " " if pending.endswith(" ") else last
    if pending.strip():
        yield pending.strip()


class LlmSpeechSource:
    """A :class:`diaproto.apps.serve.sources.Source`: the prompt's answer, spoken."""

    name = "llm-speech"
    model_queue: ModelQueue | None = None  # the chat model is remote; nothing to share here
    whole_text = True  # the prompt is one turn, not a sentence at a time

    def __init__(self, chat: Chat = local_chat, voice: SyntheticSource | None = None) -> None:
        self.chat = chat
        self.voice = voice or SyntheticSource()

    def generate(
        self,
        text: str,
        voice: str,
        speed: float,
        *,
        stop: threading.Event | None = None,
        admission: Admission | None = None,
    ) -> Generator[bytes, None, None]:
        return framed(self._speak(text, voice, speed, stop or threading.Event()))

    def _speak(
        self, prompt: str, voice: str, speed: float, stop: threading.Event
    ) -> Iterator[bytes]:
        stream = self.chat(prompt)
        try:
            deltas = (delta_text(chunk) for chunk in stream)
            for sentence in sentences_as_written(deltas):
                if stop.is_set():
                    return  # the listener left: ask the model for nothing more
                yield from self.voice.generate(sentence, voice, speed, stop=stop)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # the SDK's stream: its HTTP response is released now, not at GC


source = LlmSpeechSource()
