"""credits.spend_with_record: a spend and the row it pays for, written together.

On PostgreSQL it is one statement run on the app's statement sessions
(AUTOCOMMIT, as the AI and chat routes run it); on SQLite a savepoint in a
transaction. Both are checked here through the AI usage table, the record
the metered endpoints write.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.ai import usage
from accessai.ai.models import UsageRecord
from accessai.core.db import create_sessionmaker, create_statement_sessionmaker
from accessai.core.errors import NotFoundError
from accessai.credits import service as credits
from tests.conftest import TestDatabase as Database
from tests.credits.support import account_state, ledger_rows, ledger_sum, snapshot
from tests.factories import create_user
from tests.support.databases import wait_for_lock_waiter


def pending_usage(user_id: uuid.UUID, price: int) -> dict[str, Any]:
    return usage.pending_row(
        user_id=user_id,
        endpoint="analyze",
        engine="local",
        model=None,
        input_chars=12,
        reserved=price,
        request_id="req-1",
    )


async def spend(db: Database, user_id: uuid.UUID, price: int) -> credits.RecordedSpend:
    async with create_statement_sessionmaker(db.engine).begin() as session:
        return await credits.spend_with_record(
            session,
            user_id,
            price,
            "analyze",
            record=usage.USAGE_TABLE,
            values=pending_usage(user_id, price),
            reference="usage:{id}",
        )


async def test_the_spend_its_record_and_its_ledger_row_are_written_together(
    db: Database, session: AsyncSession
) -> None:
    user = await create_user(session, credits=100)
    spent = await spend(db, user.id, 25)

    assert spent.balance == 75
    record = await session.get(UsageRecord, spent.record_id)
    assert record is not None
    assert (record.user_id, record.outcome, record.credits_charged) == (user.id, "pending", 25)
    *_, (_, amount, _, reason, reference, balance_after) = await ledger_rows(session, user.id)
    assert (amount, reason, reference, balance_after) == (-25, "analyze", f"usage:{record.id}", 75)
    assert await account_state(session, user.id) == (75, 0)
    assert await ledger_sum(session, user.id) == 75


async def test_a_refusal_writes_nothing(db: Database, session: AsyncSession) -> None:
    user = await create_user(session, credits=20)
    before = await snapshot(session, user.id)
    await session.commit()

    with pytest.raises(credits.InsufficientCreditsError) as refused:
        await spend(db, user.id, 25)

    assert (refused.value.balance, refused.value.required) == (20, 25)
    assert await snapshot(session, user.id) == before
    assert await session.scalar(select(UsageRecord).where(UsageRecord.user_id == user.id)) is None


async def test_an_account_on_hold_cannot_spend(db: Database, session: AsyncSession) -> None:
    user = await create_user(session, credits=10)
    await credits.take_back_credits(session, user.id, 30, "stripe_refund", "re_1")
    await session.commit()

    with pytest.raises(credits.AccountOnHoldError) as refused:
        await spend(db, user.id, 1)
    assert refused.value.debt == 20


async def test_a_user_without_an_account_is_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError):
        await spend(db, uuid.uuid4(), 10)


async def test_concurrent_spends_never_overdraw(db: Database, session: AsyncSession) -> None:
    user = await create_user(session, credits=100)
    outcomes = await asyncio.gather(
        *(spend(db, user.id, 10) for _ in range(30)), return_exceptions=True
    )
    spent = [o for o in outcomes if isinstance(o, credits.RecordedSpend)]
    refused = [o for o in outcomes if isinstance(o, credits.InsufficientCreditsError)]
    assert (len(spent), len(refused)) == (10, 20)
    assert sorted(o.balance for o in spent) == list(range(0, 100, 10))
    assert await account_state(session, user.id) == (0, 0)
    assert await ledger_sum(session, user.id) == 0


async def test_a_refusal_reports_the_balance_that_refused_it(
    db: Database, session: AsyncSession
) -> None:
    """The statement reads the account from its snapshot to explain a refusal.
    When a concurrent spend commits while the statement waits for the row,
    that snapshot is stale: the refusal must report the balance after it."""
    if db.kind != "postgresql":
        pytest.skip("SQLite serialises writers at BEGIN: no statement waits on a row")
    user = await create_user(session, credits=30)
    async with create_sessionmaker(db.engine)() as holder, holder.begin():
        await credits.deduct_credits(holder, user.id, 20, "analyze")  # row locked, balance 10
        waiting = asyncio.create_task(spend(db, user.id, 25))  # its snapshot: balance 30
        await wait_for_lock_waiter(session, message="the spend never waited for the account row")
    with pytest.raises(credits.InsufficientCreditsError) as refused:
        await waiting
    assert (refused.value.balance, refused.value.required) == (10, 25)
