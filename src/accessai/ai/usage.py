"""The usage log: writing one row per AI request, and reading a user's rows and totals.

A row is written when the request reserves its credits (outcome
``pending``, ``credits_charged`` = the reserved amount) and settled exactly
once afterwards: by the request itself, or by the sweep when the
request died. Settling is a conditional ``UPDATE ... WHERE outcome =
'pending'``, so the request and the sweep can never both settle a row.

Functions here ``flush()`` inside the caller's transaction and never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import anyio
from sqlalchemy import Integer, String, Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.ai.engines.base import EngineUsage
from accessai.ai.models import UsageRecord
from accessai.core.db import newest_first, utcnow
from accessai.core.errors import AppError
from accessai.credits.models import UserCredits

# The Core table, for statements that skip the ORM's per-statement work.
USAGE_TABLE: Table = UsageRecord.__table__  # type: ignore[assignment]
PENDING = "pending"
SUCCESS = "success"
ABANDONED = "abandoned"


def failure_outcome(error: BaseException) -> str:
    """The outcome recorded for a request that raised (AI endpoints and chat)."""
    if isinstance(error, AppError):
        return error.code
    if isinstance(error, anyio.get_cancelled_exc_class()):
        return "cancelled"
    return "internal_error"


def milliseconds(seconds: float) -> int:
    """A duration as the usage log stores it: whole milliseconds, never negative."""
    return max(0, round(seconds * 1000))


@dataclass(frozen=True, slots=True)
class UsagePage:
    items: list[UsageRecord]
    next_before_id: int | None


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int
    credits: int


@dataclass(frozen=True, slots=True)
class UsageTotals:
    overall: Totals
    per_day: list[tuple[date, Totals]]  # oldest first
    per_endpoint: list[tuple[str, Totals]]  # by endpoint name


@dataclass(frozen=True, slots=True)
class PendingReservation:
    usage_id: int
    user_id: uuid.UUID
    credits: int


def pending_row(
    *,
    user_id: uuid.UUID,
    endpoint: str,
    engine: str,
    model: str | None,
    input_chars: int,
    reserved: int,
    request_id: str | None,
) -> dict[str, Any]:
    """The columns of the pending row of a request reserving ``reserved`` credits.

    The row is inserted by ``credits.service.spend_with_record``, together
    with the reservation it explains.
    """
    return {
        "user_id": user_id,
        "endpoint": endpoint,
        "engine": engine,
        "model": model,
        "input_chars": input_chars,
        "credits_charged": reserved,
        "latency_ms": 0,
        "outcome": PENDING,
        "request_id": request_id,
        "created_at": utcnow(),
    }


async def record_refusal(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    endpoint: str,
    engine: str,
    model: str | None,
    input_chars: int,
    outcome: str,
    request_id: str | None,
) -> None:
    """Log a request refused before any credits moved (insufficient credits, on hold)."""
    await session.execute(
        insert(UsageRecord).values(
            user_id=user_id,
            endpoint=endpoint,
            engine=engine,
            model=model,
            input_chars=input_chars,
            credits_charged=0,
            latency_ms=0,
            outcome=outcome,
            request_id=request_id,
            created_at=utcnow(),
        )
    )


async def settle_unpaid(
    session: AsyncSession, usage_id: int, *, outcome: str, latency_ms: int | None = None
) -> bool:
    """Move a pending row to a final outcome that charged nothing (a refund, the sweep).

    False when the row was already settled.
    """
    values: dict[str, Any] = {"outcome": outcome[:32], "credits_charged": 0}
    if latency_ms is not None:
        values["latency_ms"] = latency_ms
    settled = await session.scalar(
        update(UsageRecord)
        .where(UsageRecord.id == usage_id, UsageRecord.outcome == PENDING)
        .values(**values)
        .returning(UsageRecord.id)
        .execution_options(synchronize_session=False)
    )
    return settled is not None


async def settle_reading_balance(
    session: AsyncSession,
    usage_id: int,
    *,
    outcome: str,
    credits_charged: int,
    latency_ms: int,
    model: str | None,
    tokens: EngineUsage | None,
) -> int | None:
    """``settle``, returning the user's balance read in the same statement.

    None when the row was already settled. One round trip for the success
    path of a metered request, which answers with the balance; the
    statement is built once (see ``_SETTLE_READING_BALANCE``).
    """
    row = (
        await session.execute(
            _SETTLE_READING_BALANCE,
            {
                "settle_id": usage_id,
                "settle_outcome": outcome[:32],
                "settle_credits": credits_charged,
                "settle_latency_ms": latency_ms,
                "settle_model": model[:128] if model else None,
                "settle_prompt_tokens": tokens.prompt_tokens if tokens else None,
                "settle_completion_tokens": tokens.completion_tokens if tokens else None,
            },
        )
    ).one_or_none()
    return None if row is None else int(row[1])


# Bound parameters only, so a request executes it without building it: a
# statement's construction costs about as much as its round trip. A missing
# model or token count keeps the row's value.
_SETTLE_READING_BALANCE = (
    update(USAGE_TABLE)
    .where(
        UsageRecord.id == bindparam("settle_id"),
        UsageRecord.outcome == PENDING,
    )
    .values(
        outcome=bindparam("settle_outcome"),
        credits_charged=bindparam("settle_credits"),
        latency_ms=bindparam("settle_latency_ms"),
        model=func.coalesce(bindparam("settle_model", type_=String()), UsageRecord.model),
        prompt_tokens=func.coalesce(
            bindparam("settle_prompt_tokens", type_=Integer()), UsageRecord.prompt_tokens
        ),
        completion_tokens=func.coalesce(
            bindparam("settle_completion_tokens", type_=Integer()), UsageRecord.completion_tokens
        ),
    )
    .returning(
        UsageRecord.id,
        select(UserCredits.balance)
        .where(UserCredits.user_id == UsageRecord.user_id)
        .scalar_subquery(),
    )
)


async def find_pending(
    session: AsyncSession, *, created_before: datetime, limit: int
) -> list[PendingReservation]:
    """Reservations still pending that were made before ``created_before``, oldest first."""
    rows = await session.execute(
        select(UsageRecord.id, UsageRecord.user_id, UsageRecord.credits_charged)
        .where(UsageRecord.outcome == PENDING, UsageRecord.created_at < created_before)
        .order_by(UsageRecord.created_at, UsageRecord.id)
        .limit(limit)
    )
    return [PendingReservation(usage_id, user_id, credits) for usage_id, user_id, credits in rows]


async def list_usage(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, before_id: int | None = None
) -> UsagePage:
    """One newest-first page of the user's rows, strictly older than ``before_id``."""
    statement = newest_first(
        session, select(UsageRecord), UsageRecord.id, UsageRecord.user_id, user_id
    )
    if before_id is not None:
        statement = statement.where(UsageRecord.id < before_id)
    rows = list(await session.scalars(statement.limit(limit + 1)))
    items = rows[:limit]
    return UsagePage(items=items, next_before_id=items[-1].id if len(rows) > limit else None)


async def totals(session: AsyncSession, user_id: uuid.UUID, *, since: datetime) -> UsageTotals:
    """Request counts and credits charged since ``since``, per UTC day and per endpoint."""
    in_window = (UsageRecord.user_id == user_id, UsageRecord.created_at >= since)
    day = _utc_day(session)
    per_day_rows = await session.execute(
        select(day, func.count(), func.coalesce(func.sum(UsageRecord.credits_charged), 0))
        .where(*in_window)
        .group_by(day)
        .order_by(day)
    )
    per_day = [
        (_as_date(value), Totals(int(n), int(credits))) for value, n, credits in per_day_rows
    ]
    per_endpoint_rows = await session.execute(
        select(
            UsageRecord.endpoint,
            func.count(),
            func.coalesce(func.sum(UsageRecord.credits_charged), 0),
        )
        .where(*in_window)
        .group_by(UsageRecord.endpoint)
        .order_by(UsageRecord.endpoint)
    )
    per_endpoint = [(name, Totals(int(n), int(credits))) for name, n, credits in per_endpoint_rows]
    overall = Totals(
        requests=sum(t.requests for _, t in per_endpoint),
        credits=sum(t.credits for _, t in per_endpoint),
    )
    return UsageTotals(overall=overall, per_day=per_day, per_endpoint=per_endpoint)


def _utc_day(session: AsyncSession) -> Any:
    """The UTC calendar day of ``created_at``, computed by the database."""
    if session.get_bind().dialect.name == "postgresql":
        # timestamptz -> timestamp in UTC, whatever the connection's TimeZone.
        return func.date(func.timezone("UTC", UsageRecord.created_at)).label("day")
    # SQLite stores the UTC timestamp as ISO text: its first ten characters are the day.
    return func.date(UsageRecord.created_at).label("day")


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
