"""Helpers for the AI endpoint tests: users, reading the database, test engines."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from accessai.ai.engines.base import AnalysisResult, SummaryResult
from accessai.ai.models import IdempotencyKey, UsageRecord
from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from accessai.credits import service as credits
from accessai.credits.models import CreditTransaction, UserCredits
from accessai.main import create_app
from accessai.users.models import User
from tests.factories import auth_headers, create_user

# Six sentences about one topic: the local engine picks about a third of them.
ARTICLE = (
    "The city library reopened on Monday after a two-year renovation. "
    "Visitors found brighter reading rooms, a larger children's section and a new cafe. "
    "The renovation cost twelve million dollars and was paid for by a local bond. "
    "Librarians say the library now has space for twice as many study desks. "
    "The old heating system was replaced with heat pumps that cut energy use in half. "
    "The library is open every day from nine in the morning until eight at night."
)
POSITIVE = (
    "I absolutely love this new library! The staff are wonderful, friendly and helpful. "
    "The reading rooms are beautiful, bright and peaceful. What a fantastic, delightful place."
)
SHORT = "A short but valid text."


@dataclass(frozen=True)
class Account:
    balance: int
    ledger_sum: int
    ledger: list[CreditTransaction]


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app of its own (lifespan included) and a client for it, for non-default settings."""
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


async def new_user(engine: AsyncEngine, *, credits: int = 100) -> User:
    async with create_sessionmaker(engine)() as session:
        return await create_user(session, credits=credits)


def headers_for(settings: Settings, user: User, **extra: str) -> dict[str, str]:
    return {**auth_headers(settings, user), **extra}


async def account(engine: AsyncEngine, user_id: uuid.UUID) -> Account:
    """The balance and the ledger (oldest first), read in a fresh transaction."""
    async with create_sessionmaker(engine)() as session:
        balance = await session.scalar(
            select(UserCredits.balance).where(UserCredits.user_id == user_id)
        )
        rows = list(
            await session.scalars(
                select(CreditTransaction)
                .where(CreditTransaction.user_id == user_id)
                .order_by(CreditTransaction.id)
            )
        )
    assert balance is not None
    return Account(balance=balance, ledger_sum=sum(r.amount for r in rows), ledger=rows)


async def usage_rows(engine: AsyncEngine, user_id: uuid.UUID) -> list[UsageRecord]:
    async with create_sessionmaker(engine)() as session:
        return list(
            await session.scalars(
                select(UsageRecord).where(UsageRecord.user_id == user_id).order_by(UsageRecord.id)
            )
        )


async def idempotency_rows(engine: AsyncEngine, user_id: uuid.UUID) -> list[IdempotencyKey]:
    async with create_sessionmaker(engine)() as session:
        return list(
            await session.scalars(select(IdempotencyKey).where(IdempotencyKey.user_id == user_id))
        )


async def assert_every_ledger_balances(engine: AsyncEngine) -> None:
    """Every account agrees with its ledger (balance, debt, running balances, signs)."""
    async with create_sessionmaker(engine)() as session:
        mismatches = await credits.verify_ledger(session)
    assert mismatches == [], [str(m) for m in mismatches]


class GateEngine:
    """An engine that waits at a gate, so a test controls when a call finishes.

    ``entered`` is set when a call starts; the call returns when ``release``
    is set. ``calls`` counts how many calls reached the engine.
    """

    name = "gate"
    model = "gate-1"

    def __init__(self, *, gate_open: bool = False, fail_with: Exception | None = None) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        if gate_open:
            self.release.set()
        self.fail_with = fail_with
        self.calls = 0
        # Set when a second call arrives: for tests where only one may.
        self.crowded = asyncio.Event()

    async def _pass(self) -> None:
        self.calls += 1
        self.entered.set()
        if self.calls > 1:
            self.crowded.set()
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with

    async def summarize(self, text: str) -> SummaryResult:
        await self._pass()
        return SummaryResult(summary=text.split(".")[0] + ".", model=self.model)

    async def analyze(self, text: str) -> AnalysisResult:
        await self._pass()
        return AnalysisResult(
            word_count=1,
            sentence_count=1,
            reading_time_seconds=1,
            sentiment_label="neutral",
            sentiment_score=0.0,
            keywords=[],
            model=self.model,
        )

    async def aclose(self) -> None:
        self.release.set()
