"""Sentence splitting: where it cuts, where it must not, and that it loses nothing."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from diaproto.apps.serve.text import MAX_INPUT_CHARS, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
        ("Wait… what?! Really", ["Wait…", "what?!", "Really"]),
        ("One... two", ["One...", "two"]),
        ("Pi is 3.14 today. Yes.", ["Pi is 3.14 today.", "Yes."]),
        ("It costs $1.50, or 2.5 euros.", ["It costs $1.50, or 2.5 euros."]),
        ("Mr. Smith met Dr. Jones. Then", ["Mr. Smith met Dr. Jones.", "Then"]),
        ("Fruit, e.g. apples, i.e. food.", ["Fruit, e.g. apples, i.e. food."]),
        ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."]),
        ("Apples, pears etc. are fruit.", ["Apples, pears etc. are fruit."]),
        ("Apples, pears etc. They grow.", ["Apples, pears etc.", "They grow."]),
        ('He said "Go." Then left.', ['He said "Go."', "Then left."]),
        ("(It works.) Good.", ["(It works.)", "Good."]),
        ("line one\nline two\n\n\nthree", ["line one", "line two", "three"]),
        ("  lots   of\tspace  .  ", ["lots of space ."]),
        ("", []),
        (" \n\t ", []),
    ],
)
def test_split(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[S1] Dia is open. [S2] You get control! [S1] Wow.",
            ["[S1] Dia is open.", "[S2] You get control!", "[S1] Wow."],
        ),
        # A speaker change is a boundary even without punctuation.
        ("[S1] Hello [S2] hi there", ["[S1] Hello", "[S2] hi there"]),
        # Tags glued to words are separated, and stay with the sentence they start.
        ("[S1]Hello.[S2]Bye.", ["[S1] Hello.", "[S2] Bye."]),
        ("x[S1]y", ["x", "[S1] y"]),
        # A tag alone on a line starts the next line's sentence.
        ("[S1]\nHello there.\n[S2]\nHi.", ["[S1] Hello there.", "[S2] Hi."]),
        # A trailing tag starts nothing: it stays with the last sentence, not alone.
        ("Hello. [S2]", ["Hello. [S2]"]),
        ("[S1] [S2]", ["[S1] [S2]"]),
        # Other bracketed text is ordinary text.
        ("[S3] Hi. (laughs) Ok.", ["[S3] Hi.", "(laughs) Ok."]),
    ],
)
def test_speaker_tags(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def _no_space(text: str) -> str:
    return "".join(text.split())


sentence_text = st.lists(
    st.sampled_from([*"ab3 .!?…,\n\t[]S12\"')(", "[S1]", "[S2]", "Mr.", "e.g."]),
    max_size=40,
).map("".join)


@given(st.one_of(sentence_text, st.text(max_size=80)))
@example("a.[S1]")
@example("\x1c\u2028a\x85b")
def test_nothing_lost_and_whitespace_normalised(text: str) -> None:
    sentences = split_sentences(text)
    assert "".join(map(_no_space, sentences)) == _no_space(text)
    for sentence in sentences:
        assert sentence
        assert sentence == " ".join(sentence.split())


@given(sentence_text)
def test_tags_start_sentences(text: str) -> None:
    sentences = split_sentences(text)
    for n, sentence in enumerate(sentences):
        words = sentence.split()
        is_tag = [w in ("[S1]", "[S2]") for w in words]
        body = is_tag.index(False) if False in is_tag else len(words)
        later_tags = [i for i in range(body, len(words)) if is_tag[i]]
        if later_tags:
            # Past its leading tags a sentence holds tags only at the very end of the text.
            assert n == len(sentences) - 1
            assert all(is_tag[later_tags[0] :])


def test_max_input_chars_matches_openai() -> None:
    assert MAX_INPUT_CHARS == 4096
