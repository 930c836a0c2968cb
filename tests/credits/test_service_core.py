"""The credit service's contract: atomic, idempotent by reference, never negative."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.credits import service as credits
from accessai.credits.models import CreditTransaction, UserCredits
from tests.factories import create_user


async def ledger_sum(session: AsyncSession, user_id) -> int:
    return (
        await session.scalar(
            select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
                CreditTransaction.user_id == user_id
            )
        )
    ) or 0


async def test_add_and_deduct_write_one_ledger_row_each(session: AsyncSession) -> None:
    user = await create_user(session, credits=100)
    added = await credits.add_credits(session, user.id, 50, "admin_grant")
    spent = await credits.deduct_credits(session, user.id, 30, "summarize")
    await session.commit()
    assert (added.amount, added.balance_after) == (50, 150)
    assert (spent.amount, spent.balance_after) == (-30, 120)
    assert await credits.get_balance(session, user.id) == 120
    assert await ledger_sum(session, user.id) == 120


async def test_insufficient_credits_changes_nothing(session: AsyncSession) -> None:
    user = await create_user(session, credits=20)
    with pytest.raises(credits.InsufficientCreditsError) as caught:
        await credits.deduct_credits(session, user.id, 25, "analyze")
    assert caught.value.body() == {"error": "insufficient_credits", "balance": 20, "required": 25}
    await session.commit()
    assert await credits.get_balance(session, user.id) == 20
    rows = await session.scalar(select(func.count()).where(CreditTransaction.user_id == user.id))
    assert rows == 1  # only the signup bonus


@pytest.mark.parametrize("amount", [0, -5, True, 2.5, "10"])
async def test_invalid_amounts_are_rejected(session: AsyncSession, amount: object) -> None:
    user = await create_user(session, credits=100)
    with pytest.raises(credits.InvalidAmountError):
        await credits.add_credits(session, user.id, amount, "admin_grant")  # type: ignore[arg-type]
    with pytest.raises(credits.InvalidAmountError):
        await credits.deduct_credits(session, user.id, amount, "summarize")  # type: ignore[arg-type]


async def test_same_reference_moves_the_balance_once(session: AsyncSession) -> None:
    user = await create_user(session, credits=100)
    first = await credits.deduct_credits(session, user.id, 10, "summarize", reference="req-1")
    again = await credits.deduct_credits(session, user.id, 10, "summarize", reference="req-1")
    await session.commit()
    assert not first.replayed
    assert again.replayed
    assert again.id == first.id
    assert await credits.get_balance(session, user.id) == 90


async def test_take_back_records_shortfall_as_debt_and_blocks_spending(
    session: AsyncSession,
) -> None:
    user = await create_user(session, credits=100)
    await credits.deduct_credits(session, user.id, 70, "summarize")
    result = await credits.take_back_credits(
        session, user.id, 100, credits.Reason.STRIPE_REFUND, reference="refund:ch_1"
    )
    await session.commit()
    assert (result.taken, result.shortfall) == (30, 70)
    account = await session.get(UserCredits, user.id, populate_existing=True)
    assert account is not None
    assert (account.balance, account.debt) == (0, 70)
    with pytest.raises(credits.AccountOnHoldError):
        await credits.deduct_credits(session, user.id, 1, "summarize")

    # New credits repay the debt first, on a ledger row of their own.
    await credits.add_credits(session, user.id, 200, "stripe_payment", reference="cs_2")
    await session.commit()
    account = await session.get(UserCredits, user.id, populate_existing=True)
    assert account is not None
    assert (account.balance, account.debt) == (130, 0)
    assert await ledger_sum(session, user.id) == 130
