"""Sentiment with VADER (Hutto & Gilbert, 2014), a lexicon and rule model.

The ``vaderSentiment`` package ships its lexicon files inside the package, so
this works offline. VADER is built for sentences: as its authors show for
paragraphs, a text's score is the mean of its sentences' compound scores.
"""

from __future__ import annotations

from collections.abc import Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from accessai.ai.engines.base import SentimentLabel

# The thresholds used throughout the VADER literature.
POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05


def sentiment_label(score: float) -> SentimentLabel:
    if score >= POSITIVE_THRESHOLD:
        return "positive"
    if score <= NEGATIVE_THRESHOLD:
        return "negative"
    return "neutral"


class SentimentScorer:
    """Holds the loaded VADER lexicon; safe to share between threads.

    Loading reads about 7,500 lexicon entries plus the emoji table, so do it
    once (at engine construction), not per request. Scoring only reads it.
    """

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()

    def sentence_score(self, sentence: str) -> float:
        """VADER's compound score of one sentence, in [-1, 1]."""
        return float(self._analyzer.polarity_scores(sentence)["compound"])

    def score(self, sentences: Sequence[str]) -> float:
        """Mean compound score of the sentences, 0.0 for none, rounded like VADER's own."""
        if not sentences:
            return 0.0
        return round(sum(map(self.sentence_score, sentences)) / len(sentences), 4)
