"""The offline engine: TextRank summaries and VADER sentiment, no network.

All the work is plain CPU-bound Python, so each call runs in a worker thread
(``anyio.to_thread``) and never blocks the server's event loop. The lexicon
is loaded once, when the engine is built in the app's lifespan.
"""

from __future__ import annotations

from anyio import to_thread

from accessai.ai.engines.base import AnalysisResult, SummaryResult
from accessai.ai.engines.sentiment import SentimentScorer, sentiment_label
from accessai.ai.engines.text import (
    DEFAULT_KEYWORD_LIMIT,
    extract_keywords,
    extractive_summary,
    parse,
    reading_time_seconds,
)


class LocalEngine:
    """Implements ``AIEngine`` with extractive summaries and lexicon sentiment."""

    name = "local"
    model = "local-textrank-vader-1"

    def __init__(self, *, keyword_limit: int = DEFAULT_KEYWORD_LIMIT) -> None:
        self._keyword_limit = keyword_limit
        self._sentiment = SentimentScorer()

    async def summarize(self, text: str) -> SummaryResult:
        return await to_thread.run_sync(self.summarize_sync, text)

    async def analyze(self, text: str) -> AnalysisResult:
        return await to_thread.run_sync(self.analyze_sync, text)

    async def aclose(self) -> None:
        """Nothing to release: no connections, no files kept open."""

    def summarize_sync(self, text: str) -> SummaryResult:
        """The blocking work behind ``summarize``."""
        return SummaryResult(summary=extractive_summary(parse(text)), model=self.model)

    def analyze_sync(self, text: str) -> AnalysisResult:
        """The blocking work behind ``analyze``."""
        document = parse(text)
        score = self._sentiment.score(document.sentences)
        return AnalysisResult(
            word_count=document.word_count,
            sentence_count=len(document.sentences),
            reading_time_seconds=reading_time_seconds(document.word_count),
            sentiment_label=sentiment_label(score),
            sentiment_score=score,
            keywords=extract_keywords(document, self._keyword_limit),
            model=self.model,
        )
