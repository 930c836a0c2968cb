from __future__ import annotations

import pytest

from accessai.ai.engines.text_stats import (
    reading_time_seconds,
    sentence_count,
    word_count,
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", 0),
        ("   \n\t", 0),
        ("Hello, world!", 2),
        ("Don't stop the well-known show.", 5),
        ("It costs 3.50 euros — or £3!", 6),
        ("snake_case counts as two", 5),
        ("Ça va? Très bien.", 4),
    ],
)
def test_word_count(text: str, words: int) -> None:
    assert word_count(text) == words


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("", 0),
        ("...", 0),
        ("No full stop", 1),
        ("One. Two! Three? Four", 4),
        ("Wait... what?!  Really.", 3),
        ("Pi is 3.14 exactly.", 1),
        ("Ends with an ellipsis…", 1),
    ],
)
def test_sentence_count(text: str, sentences: int) -> None:
    assert sentence_count(text) == sentences


@pytest.mark.parametrize(("words", "seconds"), [(0, 0), (1, 1), (200, 60), (201, 61), (21, 7)])
def test_reading_time_rounds_up(words: int, seconds: int) -> None:
    assert reading_time_seconds(words) == seconds
