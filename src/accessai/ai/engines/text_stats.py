"""Counts every engine reports the same way: words, sentences, reading time.

These are facts about the text, so they are computed here rather than asked
of a language model (which miscounts), and switching engines never changes
them.
"""

from __future__ import annotations

import math
import re

# Letters/digits; inner apostrophes and hyphens ("don't", "well-known") and
# separators inside numbers ("3.50", "1,000") keep one word.
_WORD = re.compile(r"[^\W_]+(?:(?:['\u2019\-]|(?<=\d)[.,](?=\d))[^\W_]+)*")
# A sentence ends at . ! ? or … (repeated or not) followed by whitespace or the end.
_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")

WORDS_PER_MINUTE = 200  # a common average for adult silent reading


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def sentence_count(text: str) -> int:
    """Sentences that contain at least one word; trailing text without a full stop counts."""
    return sum(1 for part in _SENTENCE_END.split(text) if _WORD.search(part))


def reading_time_seconds(words: int) -> int:
    """Whole seconds to read ``words`` words, rounded up; 0 for no words."""
    return math.ceil(words * 60 / WORDS_PER_MINUTE)
