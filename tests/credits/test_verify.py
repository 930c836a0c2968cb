"""verify_ledger finds every kind of broken invariant, and nothing when all is well."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.credits import service as credits
from accessai.credits.models import CreditTransaction, UserCredits
from accessai.credits.service import MismatchKind
from tests.conftest import TestDatabase as Database
from tests.credits.support import counting_statements
from tests.factories import create_user


async def busy_user(session: AsyncSession, email: str | None = None) -> uuid.UUID:
    """A user whose ledger has every kind of row, debt included."""
    user_id = (await create_user(session, email=email, credits=100)).id
    await credits.deduct_credits(session, user_id, 30, "summarize")
    await credits.add_credits(session, user_id, 50, "stripe_payment", "cs_1")
    await credits.take_back_credits(session, user_id, 200, "stripe_dispute", "dp_1")
    await credits.add_credits(session, user_id, 500, "stripe_payment", "cs_2")
    await credits.deduct_credits(session, user_id, 25, "admin_deduct", note="duplicate charge")
    await session.commit()
    return user_id


def kinds(mismatches: list[credits.Mismatch], user_id: uuid.UUID) -> set[MismatchKind]:
    return {m.kind for m in mismatches if m.user_id == user_id}


async def test_a_consistent_ledger_has_no_mismatch(session: AsyncSession) -> None:
    await busy_user(session)
    await busy_user(session)
    await create_user(session, credits=0)  # an account with no rows at all
    assert await credits.verify_ledger(session) == []


async def test_a_balance_changed_behind_the_ledgers_back_is_reported(
    session: AsyncSession,
) -> None:
    healthy = await busy_user(session)
    broken = await busy_user(session, email="broken@example.com")
    await session.execute(
        update(UserCredits).where(UserCredits.user_id == broken).values(balance=999)
    )
    await session.commit()
    mismatches = await credits.verify_ledger(session)
    assert kinds(mismatches, broken) == {MismatchKind.BALANCE}
    assert kinds(mismatches, healthy) == set()
    (mismatch,) = mismatches
    assert mismatch.email == "broken@example.com"
    assert "balance 999, ledger sums to 395" in str(mismatch)


async def test_an_edited_balance_after_breaks_the_chain(session: AsyncSession) -> None:
    user_id = await busy_user(session)
    third = (
        await session.scalars(
            select(CreditTransaction.id)
            .where(CreditTransaction.user_id == user_id)
            .order_by(CreditTransaction.id)
            .offset(2)
        )
    ).first()
    await session.execute(
        update(CreditTransaction).where(CreditTransaction.id == third).values(balance_after=7)
    )
    await session.commit()
    (mismatch,) = await credits.verify_ledger(session)
    assert mismatch.kind == MismatchKind.BROKEN_CHAIN
    assert f"first id {third}" in mismatch.detail


async def test_a_deleted_ledger_row_is_reported(session: AsyncSession) -> None:
    user_id = await busy_user(session)
    second = (
        await session.scalars(
            select(CreditTransaction.id)
            .where(CreditTransaction.user_id == user_id)
            .order_by(CreditTransaction.id)
            .offset(1)
        )
    ).first()
    await session.execute(delete(CreditTransaction).where(CreditTransaction.id == second))
    await session.commit()
    assert kinds(await credits.verify_ledger(session), user_id) == {
        MismatchKind.BALANCE,
        MismatchKind.BROKEN_CHAIN,
    }


async def test_debt_changed_behind_the_ledgers_back_is_reported(session: AsyncSession) -> None:
    user_id = await busy_user(session)
    await session.execute(update(UserCredits).where(UserCredits.user_id == user_id).values(debt=3))
    await session.commit()
    assert kinds(await credits.verify_ledger(session), user_id) == {
        MismatchKind.DEBT,
        MismatchKind.DEBT_WITH_BALANCE,
    }


async def test_ledger_rows_without_an_account_are_reported(session: AsyncSession) -> None:
    user_id = await busy_user(session)
    await session.execute(delete(UserCredits).where(UserCredits.user_id == user_id))
    await session.commit()
    (mismatch,) = await credits.verify_ledger(session)
    assert (mismatch.user_id, mismatch.kind) == (user_id, MismatchKind.NO_ACCOUNT)


async def test_a_negative_balance_is_reported(db: Database, session: AsyncSession) -> None:
    """The CHECK constraint forbids it; verify still looks, in case it was bypassed."""
    user_id = await busy_user(session)
    if db.kind == "postgresql":
        await session.execute(
            text("ALTER TABLE user_credits DROP CONSTRAINT ck_user_credits_balance_not_negative")
        )
    else:
        await session.execute(text("PRAGMA ignore_check_constraints = ON"))
    try:
        await session.execute(
            update(UserCredits).where(UserCredits.user_id == user_id).values(balance=-5)
        )
        found = kinds(await credits.verify_ledger(session), user_id)
    finally:
        if db.kind == "sqlite":
            # A connection flag, not transactional: reset it before the
            # connection goes back to the pool.
            await session.execute(text("PRAGMA ignore_check_constraints = OFF"))
        await session.rollback()  # PostgreSQL DDL is transactional: the CHECK comes back
    assert found == {MismatchKind.NEGATIVE_BALANCE, MismatchKind.BALANCE}


async def test_the_database_refuses_a_negative_balance(session: AsyncSession) -> None:
    from sqlalchemy.exc import IntegrityError

    user_id = await busy_user(session)
    with pytest.raises(IntegrityError):
        await session.execute(
            update(UserCredits).where(UserCredits.user_id == user_id).values(balance=-1)
        )
    await session.rollback()


async def test_verify_costs_the_same_few_queries_for_any_number_of_users(
    db: Database, session: AsyncSession
) -> None:
    await busy_user(session)
    async with counting_statements(db.engine) as one_user:
        await credits.verify_ledger(session)
    for _ in range(15):
        await busy_user(session)
    async with counting_statements(db.engine) as many_users:
        await credits.verify_ledger(session)
    assert len(many_users) == len(one_user) <= 4
