"""Reading the credit tables directly, independently of the service under test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from accessai.credits.models import CreditTransaction, UserCredits


async def ledger_sum(session: AsyncSession, user_id: uuid.UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
            CreditTransaction.user_id == user_id
        )
    )
    return int(total or 0)


async def account_state(session: AsyncSession, user_id: uuid.UUID) -> tuple[int, int]:
    """(balance, debt) as committed, bypassing the session's identity map."""
    row = (
        await session.execute(
            select(UserCredits.balance, UserCredits.debt).where(UserCredits.user_id == user_id)
        )
    ).one()
    return int(row[0]), int(row[1])


async def ledger_rows(session: AsyncSession, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = await session.execute(
        select(
            CreditTransaction.id,
            CreditTransaction.amount,
            CreditTransaction.debt_change,
            CreditTransaction.reason,
            CreditTransaction.reference,
            CreditTransaction.balance_after,
        )
        .where(CreditTransaction.user_id == user_id)
        .order_by(CreditTransaction.id)
    )
    return [tuple(row) for row in rows]


async def snapshot(session: AsyncSession, user_id: uuid.UUID) -> tuple[Any, ...]:
    """Everything the service may touch for one user, to prove a refusal changed nothing."""
    account = (
        await session.execute(select(UserCredits.__table__).where(UserCredits.user_id == user_id))
    ).one()
    return tuple(account), tuple(await ledger_rows(session, user_id))


async def in_own_session(
    sessionmaker: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[Any]],
) -> Any:
    """Run ``work`` in its own committed transaction; return its result or its exception."""
    async with sessionmaker() as session:
        try:
            async with session.begin():
                return await work(session)
        except Exception as error:
            return error


@asynccontextmanager
async def failing_statement(engine: AsyncEngine, starts_with: str) -> AsyncIterator[None]:
    """Make the database driver fail every statement that starts with ``starts_with``.

    A fault injected below our code (as a dropped connection or a full disk
    would be), not a patch of the service.
    """

    def fail(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(starts_with.upper()):
            raise RuntimeError(f"injected failure: {statement[:40]}")

    event.listen(engine.sync_engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", fail)


@asynccontextmanager
async def counting_statements(engine: AsyncEngine) -> AsyncIterator[list[tuple[str, Any]]]:
    """Collect every SQL statement (with its driver parameters) sent through ``engine``."""
    seen: list[tuple[str, Any]] = []

    def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
