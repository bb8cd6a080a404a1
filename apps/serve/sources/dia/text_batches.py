"""A text cut into the batches one Dia generation takes, each opening with its speaker tag.

Dia is advised to speak about 20 s (300 characters) a generation, and its tokenizer keeps
1024 bytes: sentences are grouped up to that, a longer one is cut at spaces.
"""

from __future__ import annotations

from collections.abc import Iterator

from diaproto.apps.serve.text import SPEAKER_TAG, split_sentences

MAX_CHARS_PER_CALL = 300  # about 20 s of speech: Dia's advice for one generation
# Dia's tokenizer keeps 1024 bytes; the speaker tag prefixed to every text needs 5 of them.
MAX_TEXT_BYTES = 1000


def _fits(text: str, max_chars: int) -> bool:
    return len(text) <= max_chars and len(text.encode()) <= MAX_TEXT_BYTES


def _pieces(sentence: str, max_chars: int) -> Iterator[str]:
    """``sentence`` cut at spaces (inside a word only if it must) into pieces of at most
    ``max_chars`` characters and :data:`MAX_TEXT_BYTES` bytes of UTF-8."""
    current = ""
    for word in sentence.split():
        joined = f"{current} {word}" if current else word
        if _fits(joined, max_chars):
            current = joined
            continue
        if current:
            yield current
        current = ""
        for char in word:  # a word longer than a piece: cut it where it must be cut
            if not _fits(current + char, max_chars):
                yield current
                current = ""
            current += char
    if current:
        yield current


def tagged_batches(text: str, voice: str, max_chars: int = MAX_CHARS_PER_CALL) -> list[str]:
    """Sentences grouped into texts of at most ``max_chars``, each starting with the speaker
    tag in force (Dia needs one at the start of every generation). A longer sentence is cut
    at spaces: Dia's tokenizer would silently drop what is past its 1024 bytes."""
    out: list[str] = []
    current: list[str] = []
    for whole in split_sentences(text):
        for sentence in _pieces(whole, max_chars):
            if current and not _fits(" ".join([*current, sentence]), max_chars):
                out.append(" ".join(current))
                current = []
            current.append(sentence)
    if current:
        out.append(" ".join(current))
    tagged: list[str] = []
    speaker = f"[{voice}]"
    for batch in out:
        full = batch if SPEAKER_TAG.match(batch) else f"{speaker} {batch}"
        speaker = SPEAKER_TAG.findall(full)[-1]
        tagged.append(full)
    return tagged
