"""Chat test setup: the app forwards to the OpenAI stand-in; ledger checks.

Every check opens and closes its own session: on SQLite an open transaction
holds the write lock, which would stall the server under test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from accessai.ai.models import UsageRecord
from accessai.chat.models import ChatHold, HoldStatus
from accessai.chat.pricing import ModelPrice, PriceBook
from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from accessai.credits import service as credits
from accessai.credits.models import CreditTransaction, UserCredits
from accessai.main import create_app
from tests.conftest import TestDatabase
from tests.support.live_server import LiveServer
from tests.support.openai_fixtures import STANDIN_API_KEY
from tests.support.openai_upstream import OpenAIUpstream

MODEL = "standin-chat"
UPSTREAM_MODEL = "standin-model"
# Fractional credits per token, so the tests exercise the rounding.
PROMPT_PER_1K = 500
COMPLETION_PER_1K = 1500
MAX_TOKENS_CAP = 64
MARGIN_PERCENT = 25

CHAT_MODELS: dict[str, Any] = {
    MODEL: {
        "prompt_credits_per_1k": PROMPT_PER_1K,
        "completion_credits_per_1k": COMPLETION_PER_1K,
        "upstream_model": UPSTREAM_MODEL,
    }
}


def chat_settings(settings_factory: Callable[..., Settings], base_url: str, **overrides: Any):
    values: dict[str, Any] = {
        "openai_base_url": base_url,
        "openai_api_key": STANDIN_API_KEY,
        "openai_timeout_seconds": 10.0,
        "chat_models": CHAT_MODELS,
        "chat_max_tokens_cap": MAX_TOKENS_CAP,
        "chat_prompt_margin_percent": MARGIN_PERCENT,
    }
    values.update(overrides)
    return settings_factory(**values)


@pytest.fixture
def settings(
    settings_factory: Callable[..., Settings], openai_upstream: OpenAIUpstream
) -> Settings:
    return chat_settings(settings_factory, openai_upstream.base_url)


@pytest.fixture
def price(settings: Settings) -> ModelPrice:
    return PriceBook.from_settings(settings).get(MODEL)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """AccessAI served by uvicorn on a loopback port (its own thread and loop)."""
    with LiveServer(create_app(settings)) as server:
        yield server


# --- Ledger checks -----------------------------------------------------------------


@dataclass
class Account:
    balance: int
    ledger: list[tuple[int, str, str | None]]  # (amount, reason, reference)


async def account(db: TestDatabase, user_id: uuid.UUID) -> Account:
    async with create_sessionmaker(db.engine)() as session:
        balance = await session.scalar(
            select(UserCredits.balance).where(UserCredits.user_id == user_id)
        )
        rows = (
            await session.execute(
                select(
                    CreditTransaction.amount, CreditTransaction.reason, CreditTransaction.reference
                )
                .where(CreditTransaction.user_id == user_id)
                .order_by(CreditTransaction.id)
            )
        ).all()
    assert balance is not None
    return Account(balance=balance, ledger=[tuple(row) for row in rows])  # type: ignore[misc]


async def chat_net(db: TestDatabase, user_id: uuid.UUID) -> int:
    """What chat cost the user, from the ledger: -(holds + releases)."""
    acct = await account(db, user_id)
    return -sum(amount for amount, reason, _ in acct.ledger if reason.startswith("chat_"))


async def assert_ledger_invariant(db: TestDatabase) -> None:
    """balance == sum(ledger) and balance >= 0 for everyone (verify_ledger); no hold left open."""
    async with create_sessionmaker(db.engine)() as session:
        mismatches = await credits.verify_ledger(session)
        open_holds = await session.scalar(
            select(func.count()).select_from(ChatHold).where(ChatHold.status == HoldStatus.HELD)
        )
    assert [str(m) for m in mismatches] == []
    assert open_holds == 0


async def holds_of(db: TestDatabase, user_id: uuid.UUID) -> list[ChatHold]:
    async with create_sessionmaker(db.engine)() as session:
        return list(
            await session.scalars(
                select(ChatHold).where(ChatHold.user_id == user_id).order_by(ChatHold.created_at)
            )
        )


async def usage_of(db: TestDatabase, user_id: uuid.UUID) -> list[UsageRecord]:
    async with create_sessionmaker(db.engine)() as session:
        return list(
            await session.scalars(
                select(UsageRecord).where(UsageRecord.user_id == user_id).order_by(UsageRecord.id)
            )
        )


async def wait_for_settlement(db: TestDatabase, user_id: uuid.UUID, count: int = 1) -> None:
    """Wait (bounded) until ``count`` holds of the user are no longer open.

    The server settles a stream after the client has gone, on its own time.
    """
    deadline = time.monotonic() + 15
    while True:
        holds = await holds_of(db, user_id)
        if len(holds) >= count and all(h.status != HoldStatus.HELD for h in holds):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"holds not settled: {[(h.status, h.amount) for h in holds]}")
        await asyncio.sleep(0.02)
