"""The interface every AI engine implements, and the errors engines raise.

Engines know nothing about credits or HTTP requests: they turn text into a
result or raise one of the ``Engine*Error`` classes below. The AI service
refunds the caller's reservation when an engine raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from accessai.core.errors import ServiceUnavailableError, UpstreamError, UpstreamTimeoutError

SentimentLabel = Literal["positive", "negative", "neutral"]


@dataclass(frozen=True, slots=True)
class EngineUsage:
    """Token counts as reported by the engine; ``None`` when it does not count tokens."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class SummaryResult:
    summary: str
    model: str
    usage: EngineUsage = field(default_factory=EngineUsage)


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    word_count: int
    sentence_count: int
    reading_time_seconds: int
    sentiment_label: SentimentLabel
    # Compound sentiment score in [-1.0, 1.0]; a model output, not money.
    sentiment_score: float
    keywords: list[str]
    model: str
    usage: EngineUsage = field(default_factory=EngineUsage)


class AIEngine(Protocol):
    """What the AI service needs from an engine."""

    name: str  # "local" or "openai": recorded in the usage log
    model: str  # the model a call asks for (an answer may name a more exact one)

    async def summarize(self, text: str) -> SummaryResult: ...

    async def analyze(self, text: str) -> AnalysisResult: ...

    async def aclose(self) -> None: ...


class EngineUnavailableError(ServiceUnavailableError):
    """The engine cannot be reached (connection refused, DNS, not configured)."""

    code = "engine_unavailable"


class EngineTimeoutError(UpstreamTimeoutError):
    """The engine did not answer within the configured timeout."""

    code = "engine_timeout"


class EngineResponseError(UpstreamError):
    """The engine answered with an error status or a malformed result."""

    code = "engine_error"
