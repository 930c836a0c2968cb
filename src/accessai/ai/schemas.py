"""Request and response bodies of the AI endpoints and the usage log."""

from __future__ import annotations

import math
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from accessai.ai.engines.base import SentimentLabel

MIN_TEXT_CHARS = 10
MAX_TEXT_CHARS = 2_000


class TextIn(BaseModel):
    """The body of POST /api/summarize and POST /api/analyze."""

    # strict: a number or a list is a 422, never coerced to text.
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(
        description=(
            f"The text to process: {MIN_TEXT_CHARS} to {MAX_TEXT_CHARS:,} characters "
            "once leading and trailing whitespace is removed."
        ),
        examples=["The new library opened downtown today. Visitors loved the reading rooms."],
    )

    @field_validator("text", mode="after")
    @classmethod
    def _trimmed_length(cls, value: str) -> str:
        text = value.strip()
        if not MIN_TEXT_CHARS <= len(text) <= MAX_TEXT_CHARS:
            raise PydanticCustomError(
                "text_length",
                "must be {minimum} to {maximum} characters after trimming whitespace "
                "(got {length})",
                {"minimum": MIN_TEXT_CHARS, "maximum": f"{MAX_TEXT_CHARS:,}", "length": len(text)},
            )
        return text


class _Charged(BaseModel):
    engine: str = Field(description="The engine that answered: local or openai.")
    model: str = Field(description="The model or algorithm version the engine used.")
    credits_charged: int = Field(description="Credits this request cost.")
    balance: int = Field(description="The balance right after this request was settled.")


class SummaryOut(_Charged):
    summary: str = Field(min_length=1)


class SentimentOut(BaseModel):
    label: SentimentLabel
    score: float = Field(ge=-1.0, le=1.0, description="-1.0 most negative, 1.0 most positive.")

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("score must be a finite number")
        return value


class AnalysisOut(_Charged):
    word_count: int = Field(ge=0)
    sentence_count: int = Field(ge=0)
    reading_time_seconds: int = Field(ge=0)
    sentiment: SentimentOut
    keywords: list[str]


# --- Usage log -------------------------------------------------------------------


class UsageItemOut(BaseModel):
    id: int
    endpoint: str
    engine: str
    model: str | None
    input_chars: int
    prompt_tokens: int | None
    completion_tokens: int | None
    credits_charged: int
    latency_ms: int
    outcome: str = Field(
        description=(
            "success; engine_error, engine_timeout or engine_unavailable (refunded); "
            "insufficient_credits or account_on_hold (refused); pending while it runs."
        )
    )
    created_at: datetime


class DayTotalOut(BaseModel):
    day: date = Field(description="The UTC calendar day.")
    requests: int
    credits: int


class EndpointTotalOut(BaseModel):
    endpoint: str
    requests: int
    credits: int


class UsageTotalsOut(BaseModel):
    days: int = Field(description="The window the totals cover: the last N UTC days.")
    since: datetime
    requests: int
    credits: int
    per_day: list[DayTotalOut] = Field(description="Days with at least one request, oldest first.")
    per_endpoint: list[EndpointTotalOut]


class UsagePageOut(BaseModel):
    items: list[UsageItemOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )
    totals: UsageTotalsOut
