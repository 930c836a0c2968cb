"""HTTP endpoints of the AI features and the usage log. No rules here: see service.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse

from accessai.ai import usage
from accessai.ai.dependencies import AIServiceDep
from accessai.ai.schemas import (
    AnalysisOut,
    DayTotalOut,
    EndpointTotalOut,
    SummaryOut,
    TextIn,
    UsageItemOut,
    UsagePageOut,
    UsageTotalsOut,
)
from accessai.ai.service import AIResponse
from accessai.core.db import SessionDep
from accessai.core.security import CurrentUser
from accessai.credits.cursor import MAX_CURSOR_LENGTH, decode_cursor, encode_cursor
from accessai.hardening.ratelimit import ai_rate_limit

router = APIRouter(tags=["ai"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Any unique string (a UUID is ideal). A retry with the same key and body "
            "within IDEMPOTENCY_TTL_HOURS returns the first response and charges nothing."
        ),
    ),
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    402: {"description": "Insufficient credits (nothing charged), or the account is on hold."},
    409: {"description": "The Idempotency-Key is in use, or was used with another body."},
    422: {"description": "The text is missing, not a string, or not 10 to 2,000 characters."},
    429: {"description": "Over RATE_LIMIT_AI for this user (nothing charged); see Retry-After."},
    502: {"description": "The engine failed or returned garbage; the charge was refunded."},
    503: {"description": "The engine cannot be reached; the charge was refunded."},
    504: {"description": "The engine timed out; the charge was refunded."},
}


def _respond(result: AIResponse) -> JSONResponse:
    headers = {
        "X-Credits-Charged": str(result.credits_charged),
        "X-Credits-Remaining": str(result.balance),
    }
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(result.body, status_code=result.status_code, headers=headers)


# The per-user limit is a route dependency: FastAPI runs it before the body,
# so a refused call never reserves credits.
@router.post(
    "/api/summarize",
    response_model=SummaryOut,
    responses=_ERRORS,
    dependencies=[Depends(ai_rate_limit)],
)
async def summarize(
    body: TextIn,
    user: CurrentUser,
    service: AIServiceDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Summarize a text (PRICE_SUMMARIZE credits, 10 by default)."""
    return _respond(await service.summarize(user.id, body.text, idempotency_key=idempotency_key))


@router.post(
    "/api/analyze",
    response_model=AnalysisOut,
    responses=_ERRORS,
    dependencies=[Depends(ai_rate_limit)],
)
async def analyze(
    body: TextIn,
    user: CurrentUser,
    service: AIServiceDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Word and sentence counts, reading time, sentiment and keywords (PRICE_ANALYZE credits)."""
    return _respond(await service.analyze(user.id, body.text, idempotency_key=idempotency_key))


@router.get("/usage")
async def read_usage(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Rows per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of the previous page."),
    ] = None,
    days: Annotated[int, Query(ge=1, le=366, description="Totals cover the last N UTC days.")] = 30,
) -> UsagePageOut:
    """The caller's AI requests, newest first, with totals per day and per endpoint."""
    before_id = decode_cursor(cursor) if cursor is not None else None
    page = await usage.list_usage(session, user.id, limit=limit, before_id=before_id)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - timedelta(days=days - 1)
    totals = await usage.totals(session, user.id, since=since)
    return UsagePageOut(
        items=[UsageItemOut.model_validate(row, from_attributes=True) for row in page.items],
        next_cursor=encode_cursor(page.next_before_id) if page.next_before_id else None,
        totals=UsageTotalsOut(
            days=days,
            since=since,
            requests=totals.overall.requests,
            credits=totals.overall.credits,
            per_day=[
                DayTotalOut(day=day, requests=t.requests, credits=t.credits)
                for day, t in totals.per_day
            ],
            per_endpoint=[
                EndpointTotalOut(endpoint=name, requests=t.requests, credits=t.credits)
                for name, t in totals.per_endpoint
            ],
        ),
    )
