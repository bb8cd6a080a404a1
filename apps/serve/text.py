"""Sentence splitting: sources synthesise, and clients hear, one sentence at a time."""

from __future__ import annotations

import re

# OpenAI's limit for /v1/audio/speech input; we use it for every endpoint.
MAX_INPUT_CHARS = 4096

SPEAKER_TAG = re.compile(r"\[S[12]\]")
_AROUND_TAG = re.compile(r"(?=\[S[12]\])|(?<=\[S[12]\])")
_TERMINATORS = ".!?…"
# Closing quotes and brackets that belong to the sentence they follow: 'He said "Hi."'.
_CLOSERS = "\"')]}\u201d\u2019\u00bb"
_OPENERS = "\"'([{\u201c\u2018\u00ab"
# Words whose trailing dot is not a sentence end. Titles precede a capitalised name, so they
# never end a sentence; "etc." ends one only when the next word is capitalised.
_TITLES = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "cf", "approx", "fig"}
)
_ETC = frozenset({"etc"})
# Initials and dotted abbreviations: "J.", "e.g.", "i.e.", "U.S.".
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+", re.UNICODE)


def _ends_sentence(word: str, next_word: str | None) -> bool:
    core = word.rstrip(_CLOSERS)
    if not core or core[-1] not in _TERMINATORS:
        return False
    # "3.14" never reaches here (it ends in a digit); a lone "." after a word does.
    if core.endswith("..") or core[-1] != "." or len(core) == 1:
        return True
    stem = core.lstrip(_OPENERS)
    if _DOTTED.fullmatch(stem):
        return False
    base = stem[:-1].lower()
    if base in _TITLES:
        return False
    if base in _ETC:
        return next_word is not None and next_word.lstrip(_OPENERS)[:1].isupper()
    return True


def _tags_only(sentence: str) -> bool:
    return not SPEAKER_TAG.sub("", sentence).strip()


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, keeping punctuation and Dia speaker tags.

    Splits after . ! ? … (unless a decimal, an abbreviation or an initial), at line breaks
    and before a speaker tag ([S1], [S2]), which starts the sentence it precedes. Runs of
    whitespace become one space; no other character is added or lost.
    """
    pieces: list[str] = []
    for line in text.splitlines():
        words = [part for word in line.split() for part in _AROUND_TAG.split(word) if part]
        current: list[str] = []
        for i, word in enumerate(words):
            if current and SPEAKER_TAG.match(word) and not _tags_only(" ".join(current)):
                pieces.append(" ".join(current))
                current = []
            current.append(word)
            next_word = words[i + 1] if i + 1 < len(words) else None
            if _ends_sentence(word, next_word):
                pieces.append(" ".join(current))
                current = []
        if current:
            pieces.append(" ".join(current))
    return _attach_lone_tags(pieces)


def _attach_lone_tags(pieces: list[str]) -> list[str]:
    """A piece of nothing but speaker tags starts the next sentence (or ends the last)."""
    out: list[str] = []
    pending: list[str] = []
    for piece in pieces:
        if _tags_only(piece):
            pending.append(piece)
            continue
        out.append(" ".join([*pending, piece]))
        pending = []
    if pending:
        if out:
            out[-1] = " ".join([out[-1], *pending])
        else:
            out.append(" ".join(pending))
    return out
