"""Many requests at once, on one engine or two (as two app processes would be).

Each request is its own session and transaction, as in the app; the database
alone decides who wins. Pool sizes are bounded (tests/support/databases.py)
so the PostgreSQL server is never asked for more than ~60 connections.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from accessai.core.db import create_engine, create_sessionmaker
from accessai.credits import service as credits
from accessai.credits.models import CreditTransaction
from tests.conftest import TestDatabase as Database
from tests.credits.support import (
    account_state,
    in_own_session,
    ledger_sum,
)
from tests.factories import create_user
from tests.support.databases import wait_for_lock_waiter


@pytest.fixture
async def second_engine(db: Database) -> AsyncIterator[AsyncEngine]:
    """Another engine on the same database: another app process's connection pool."""
    engine = create_engine(db.url, pool_size=10, max_overflow=10)
    try:
        yield engine
    finally:
        await engine.dispose()


async def rows_with_reason(session: AsyncSession, user_id: uuid.UUID, reason: str) -> int:
    count = await session.scalar(
        select(func.count()).where(
            CreditTransaction.user_id == user_id, CreditTransaction.reason == reason
        )
    )
    return int(count or 0)


async def deduct_200_times(engines: list[AsyncEngine], user_id: uuid.UUID) -> list[object]:
    makers = [create_sessionmaker(engine) for engine in engines]
    return await asyncio.gather(
        *(
            in_own_session(
                makers[i % len(makers)],
                lambda s: credits.deduct_credits(s, user_id, 10, "summarize"),
            )
            for i in range(200)
        )
    )


async def assert_exactly_100_succeeded(
    session: AsyncSession, user_id: uuid.UUID, results: list[object]
) -> None:
    spent = [r for r in results if isinstance(r, credits.CreditMovement)]
    refused = [r for r in results if isinstance(r, credits.InsufficientCreditsError)]
    assert len(spent) == 100
    assert len(refused) == 100, [r for r in results if isinstance(r, Exception)][:3]
    # Every refusal reports a balance that truly could not cover the cost.
    assert all(error.balance < error.required == 10 for error in refused)
    # Each success saw a distinct balance: 990, 980, ..., 0.
    assert sorted(m.balance_after for m in spent) == list(range(0, 1000, 10))
    assert await account_state(session, user_id) == (0, 0)
    assert await ledger_sum(session, user_id) == 0
    assert await rows_with_reason(session, user_id, "summarize") == 100
    assert await credits.verify_ledger(session) == []


async def test_200_concurrent_deductions_succeed_exactly_100_times(
    db: Database, session: AsyncSession
) -> None:
    user = await create_user(session, credits=1000)
    results = await deduct_200_times([db.engine], user.id)
    await assert_exactly_100_succeeded(session, user.id, results)


async def test_200_concurrent_deductions_over_two_engines(
    db: Database, session: AsyncSession, second_engine: AsyncEngine
) -> None:
    user = await create_user(session, credits=1000)
    results = await deduct_200_times([db.engine, second_engine], user.id)
    await assert_exactly_100_succeeded(session, user.id, results)


@pytest.mark.parametrize("engines", [1, 2])
async def test_a_reference_sent_by_20_tasks_at_once_moves_the_balance_once(
    db: Database, session: AsyncSession, second_engine: AsyncEngine, engines: int
) -> None:
    user = await create_user(session, credits=1000)
    makers = [create_sessionmaker(e) for e in [db.engine, second_engine][:engines]]
    results = await asyncio.gather(
        *(
            in_own_session(
                makers[i % engines],
                lambda s: credits.deduct_credits(s, user.id, 10, "summarize", "req-1"),
            )
            for i in range(20)
        )
    )
    assert all(isinstance(r, credits.CreditMovement) for r in results), results
    movements = [r for r in results if isinstance(r, credits.CreditMovement)]
    assert sum(not m.replayed for m in movements) == 1
    assert {(m.id, m.amount, m.balance_after) for m in movements} == {(movements[0].id, -10, 990)}
    assert await account_state(session, user.id) == (990, 0)
    assert await rows_with_reason(session, user.id, "summarize") == 1


async def test_a_payment_delivered_20_times_at_once_is_credited_once(
    db: Database, session: AsyncSession, second_engine: AsyncEngine
) -> None:
    user = await create_user(session, credits=0)
    makers = [create_sessionmaker(db.engine), create_sessionmaker(second_engine)]
    results = await asyncio.gather(
        *(
            in_own_session(
                makers[i % 2],
                lambda s: credits.add_credits(s, user.id, 500, "stripe_payment", "cs_1"),
            )
            for i in range(20)
        )
    )
    movements = [r for r in results if isinstance(r, credits.CreditMovement)]
    assert len(movements) == 20, results
    assert sum(not m.replayed for m in movements) == 1
    assert await account_state(session, user.id) == (500, 0)
    assert await ledger_sum(session, user.id) == 500


async def test_a_refund_delivered_20_times_at_once_is_taken_once(
    db: Database, session: AsyncSession, second_engine: AsyncEngine
) -> None:
    user = await create_user(session, credits=30)
    makers = [create_sessionmaker(db.engine), create_sessionmaker(second_engine)]
    results = await asyncio.gather(
        *(
            in_own_session(
                makers[i % 2],
                lambda s: credits.take_back_credits(s, user.id, 50, "stripe_refund", "re_1"),
            )
            for i in range(20)
        )
    )
    outcomes = [r for r in results if isinstance(r, credits.TakeBack)]
    assert len(outcomes) == 20, results
    assert sum(not o.replayed for o in outcomes) == 1
    assert {(o.taken, o.shortfall) for o in outcomes} == {(30, 20)}
    assert await account_state(session, user.id) == (0, 20)
    assert await credits.verify_ledger(session) == []


async def test_top_ups_and_spending_at_once_keep_the_ledger_exact(
    db: Database, session: AsyncSession, second_engine: AsyncEngine
) -> None:
    """Deductions that race with top-ups: nothing lost, nothing overdrawn."""
    user = await create_user(session, credits=100)
    makers = [create_sessionmaker(db.engine), create_sessionmaker(second_engine)]
    work = [
        (lambda s: credits.add_credits(s, user.id, 25, "admin_grant"))
        if i % 3 == 0
        else (lambda s: credits.deduct_credits(s, user.id, 20, "analyze"))
        for i in range(90)
    ]
    results = await asyncio.gather(
        *(in_own_session(makers[i % 2], job) for i, job in enumerate(work))
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, credits.InsufficientCreditsError) for e in errors), errors[:3]
    assert all(
        e.balance < e.required for e in errors if isinstance(e, credits.InsufficientCreditsError)
    )
    movements = [r for r in results if isinstance(r, credits.CreditMovement)]
    expected = 100 + sum(m.amount for m in movements)
    assert await account_state(session, user.id) == (expected, 0)
    assert await ledger_sum(session, user.id) == expected
    assert await credits.verify_ledger(session) == []


async def test_a_duplicate_that_loses_the_race_inside_the_database_replays(
    db: Database, session: AsyncSession
) -> None:
    """The unique-constraint path, made deterministic: B passes the reference
    check before A commits, then waits on A's row lock; when A commits, B's
    insert fails and B must return A's movement, with its own change undone."""
    if db.kind != "postgresql":
        pytest.skip("SQLite serialises writers at BEGIN: B cannot pass the check first")
    user = await create_user(session, credits=100)
    maker = create_sessionmaker(db.engine)
    async with maker() as a, maker() as b:
        pid_b = await b.scalar(select(func.pg_backend_pid()))
        first = await credits.deduct_credits(a, user.id, 10, "summarize", "req-1")
        racing = asyncio.create_task(credits.deduct_credits(b, user.id, 10, "summarize", "req-1"))
        async with maker() as observer:
            await wait_for_lock_waiter(observer, pid=pid_b)
        await a.commit()
        second = await racing
        await b.commit()
    assert (second.replayed, second.id) == (True, first.id)
    assert await account_state(session, user.id) == (90, 0)
