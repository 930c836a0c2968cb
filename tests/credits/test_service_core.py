"""The credit service's contract: atomic, idempotent by reference, never negative."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.credits import service as credits
from accessai.credits.models import CreditTransaction
from tests.conftest import TestDatabase as Database
from tests.credits.support import (
    account_state,
    failing_statement,
    ledger_rows,
    ledger_sum,
    snapshot,
)
from tests.factories import create_user


async def test_add_and_deduct_write_one_ledger_row_each(session: AsyncSession) -> None:
    user = await create_user(session, credits=100)
    added = await credits.add_credits(session, user.id, 50, "admin_grant")
    spent = await credits.deduct_credits(session, user.id, 30, "summarize")
    await session.commit()
    assert (added.amount, added.balance_after, added.replayed) == (50, 150, False)
    assert (spent.amount, spent.balance_after, spent.replayed) == (-30, 120, False)
    assert await credits.get_balance(session, user.id) == 120
    assert await ledger_sum(session, user.id) == 120
    rows = await ledger_rows(session, user.id)
    assert [(r[1], r[3], r[5]) for r in rows] == [
        (100, "signup_bonus", 100),
        (50, "admin_grant", 150),
        (-30, "summarize", 120),
    ]


async def test_deduct_can_spend_the_whole_balance(session: AsyncSession) -> None:
    user = await create_user(session, credits=25)
    spent = await credits.deduct_credits(session, user.id, 25, "analyze")
    await session.commit()
    assert spent.balance_after == 0
    with pytest.raises(credits.InsufficientCreditsError) as caught:
        await credits.deduct_credits(session, user.id, 1, "analyze")
    assert (caught.value.balance, caught.value.required) == (0, 1)


async def test_insufficient_credits_changes_nothing_in_either_table(
    session: AsyncSession,
) -> None:
    user = await create_user(session, credits=20)
    before = await snapshot(session, user.id)
    with pytest.raises(credits.InsufficientCreditsError) as caught:
        await credits.deduct_credits(session, user.id, 25, "analyze", reference="req-1")
    assert caught.value.body() == {"error": "insufficient_credits", "balance": 20, "required": 25}
    assert (caught.value.balance, caught.value.required) == (20, 25)
    await session.commit()
    assert await snapshot(session, user.id) == before  # balance, updated_at and every row
    # The refused reference was not spent: the same request can succeed later.
    await credits.add_credits(session, user.id, 5, "admin_grant")
    spent = await credits.deduct_credits(session, user.id, 25, "analyze", reference="req-1")
    assert (spent.replayed, spent.balance_after) == (False, 0)


@pytest.mark.parametrize(
    "amount", [0, -5, True, False, 2.5, 10.0, "10", None, credits.MAX_AMOUNT + 1]
)
async def test_invalid_amounts_are_rejected(session: AsyncSession, amount: object) -> None:
    user = await create_user(session, credits=100)
    before = await snapshot(session, user.id)
    with pytest.raises(credits.InvalidAmountError):
        await credits.add_credits(session, user.id, amount, "admin_grant")  # type: ignore[arg-type]
    with pytest.raises(credits.InvalidAmountError):
        await credits.deduct_credits(session, user.id, amount, "summarize")  # type: ignore[arg-type]
    with pytest.raises(credits.InvalidAmountError):
        await credits.take_back_credits(session, user.id, amount, "stripe_refund", "r")  # type: ignore[arg-type]
    await session.commit()
    assert await snapshot(session, user.id) == before


async def test_largest_amount_is_accepted(session: AsyncSession) -> None:
    user = await create_user(session, credits=0)
    added = await credits.add_credits(session, user.id, credits.MAX_AMOUNT, "admin_grant")
    assert added.balance_after == credits.MAX_AMOUNT


@pytest.mark.parametrize(
    ("reason", "reference", "note"),
    [
        ("", None, None),
        ("Admin Grant", None, None),
        ("a" * 65, None, None),
        ("admin_grant", "", None),
        ("admin_grant", "r" * 256, None),
        ("admin_grant", None, ""),
        ("admin_grant", None, "n" * 501),
    ],
)
async def test_invalid_reason_reference_or_note_is_rejected(
    session: AsyncSession, reason: str, reference: str | None, note: str | None
) -> None:
    user = await create_user(session, credits=100)
    with pytest.raises(credits.InvalidAmountError):
        await credits.add_credits(session, user.id, 1, reason, reference, note=note)
    with pytest.raises(credits.InvalidAmountError):
        await credits.deduct_credits(session, user.id, 1, reason, reference, note=note)


async def test_unknown_account_is_not_found(session: AsyncSession) -> None:
    import uuid

    from accessai.core.errors import NotFoundError

    with pytest.raises(NotFoundError):
        await credits.add_credits(session, uuid.uuid4(), 1, "admin_grant")
    with pytest.raises(NotFoundError):
        await credits.deduct_credits(session, uuid.uuid4(), 1, "summarize")
    with pytest.raises(NotFoundError):
        await credits.take_back_credits(session, uuid.uuid4(), 1, "stripe_refund", "r")


async def test_same_reference_moves_the_balance_once(session: AsyncSession) -> None:
    user = await create_user(session, credits=100)
    first = await credits.deduct_credits(session, user.id, 10, "summarize", reference="req-1")
    await session.commit()
    again = await credits.deduct_credits(session, user.id, 10, "summarize", reference="req-1")
    await session.commit()
    assert not first.replayed
    assert again.replayed
    assert (again.id, again.amount, again.balance_after) == (first.id, -10, 90)
    assert await credits.get_balance(session, user.id) == 90
    assert await ledger_sum(session, user.id) == 90


async def test_same_reference_for_an_add_returns_the_original(session: AsyncSession) -> None:
    user = await create_user(session, credits=0)
    first = await credits.add_credits(session, user.id, 200, "stripe_payment", "cs_1")
    await credits.deduct_credits(session, user.id, 50, "summarize")
    again = await credits.add_credits(session, user.id, 200, "stripe_payment", "cs_1")
    await session.commit()
    assert again.replayed
    assert (again.id, again.balance_after) == (first.id, 200)  # the original result
    assert await account_state(session, user.id) == (150, 0)


async def test_references_are_per_user(session: AsyncSession) -> None:
    alice = await create_user(session, credits=100)
    bob = await create_user(session, credits=100)
    a = await credits.deduct_credits(session, alice.id, 10, "summarize", reference="req-1")
    b = await credits.deduct_credits(session, bob.id, 10, "summarize", reference="req-1")
    await session.commit()
    assert not a.replayed
    assert not b.replayed
    assert await credits.get_balance(session, alice.id) == 90
    assert await credits.get_balance(session, bob.id) == 90


@pytest.mark.parametrize(
    "second",
    [
        ("deduct", 20, "summarize"),  # another amount
        ("deduct", 10, "analyze"),  # another reason
        ("add", 10, "summarize"),  # the other direction
    ],
)
async def test_a_reference_reused_for_another_movement_is_refused(
    session: AsyncSession, second: tuple[str, int, str]
) -> None:
    user = await create_user(session, credits=100)
    await credits.deduct_credits(session, user.id, 10, "summarize", reference="req-1")
    await session.commit()
    before = await snapshot(session, user.id)
    kind, amount, reason = second
    move = credits.add_credits if kind == "add" else credits.deduct_credits
    with pytest.raises(credits.ReferenceConflictError) as caught:
        await move(session, user.id, amount, reason, reference="req-1")
    assert caught.value.status_code == 409
    assert caught.value.body()["error"] == "reference_conflict"
    await session.commit()
    assert await snapshot(session, user.id) == before


async def test_open_account_twice_keeps_the_balance(session: AsyncSession) -> None:
    user = await create_user(session, credits=100)
    await credits.open_account(session, user.id)
    await session.commit()
    assert await account_state(session, user.id) == (100, 0)


async def test_take_back_records_shortfall_as_debt_and_blocks_spending(
    session: AsyncSession,
) -> None:
    user = await create_user(session, credits=100)
    await credits.deduct_credits(session, user.id, 70, "summarize")
    result = await credits.take_back_credits(
        session, user.id, 100, credits.Reason.STRIPE_REFUND, reference="refund:ch_1"
    )
    await session.commit()
    assert (result.taken, result.shortfall, result.replayed) == (30, 70, False)
    assert result.movement is not None
    assert (result.movement.amount, result.movement.debt_change) == (-30, 70)
    assert await account_state(session, user.id) == (0, 70)
    with pytest.raises(credits.AccountOnHoldError) as caught:
        await credits.deduct_credits(session, user.id, 1, "summarize")
    assert caught.value.body()["debt"] == 70

    # New credits repay the debt first, on a ledger row of their own.
    added = await credits.add_credits(session, user.id, 200, "stripe_payment", reference="cs_2")
    await session.commit()
    assert added.balance_after == 200
    assert await account_state(session, user.id) == (130, 0)
    assert await ledger_sum(session, user.id) == 130
    recovery = (await ledger_rows(session, user.id))[-1]
    assert recovery[1:4] == (-70, -70, "debt_recovery")
    assert recovery[5] == 130
    assert await credits.verify_ledger(session) == []


async def test_partial_debt_recovery_keeps_the_account_on_hold(session: AsyncSession) -> None:
    user = await create_user(session, credits=0)
    await credits.take_back_credits(session, user.id, 50, "stripe_dispute", "dp_1")
    await credits.add_credits(session, user.id, 20, "admin_grant")
    await session.commit()
    assert await account_state(session, user.id) == (0, 30)
    with pytest.raises(credits.AccountOnHoldError):
        await credits.deduct_credits(session, user.id, 1, "summarize")
    await credits.add_credits(session, user.id, 40, "admin_grant")
    await session.commit()
    assert await account_state(session, user.id) == (10, 0)
    assert await credits.verify_ledger(session) == []


async def test_take_back_from_an_empty_balance_is_idempotent(session: AsyncSession) -> None:
    # Regression: with nothing to take, no ledger row was written, so a retried
    # refund found no reference and doubled the debt.
    user = await create_user(session, credits=0)
    first = await credits.take_back_credits(session, user.id, 40, "stripe_refund", "re_1")
    await session.commit()
    again = await credits.take_back_credits(session, user.id, 40, "stripe_refund", "re_1")
    await session.commit()
    assert await account_state(session, user.id) == (0, 40)
    assert (first.movement, first.taken, first.shortfall, first.replayed) == (None, 0, 40, False)
    assert (again.movement, again.taken, again.shortfall, again.replayed) == (None, 0, 40, True)
    assert await credits.verify_ledger(session) == []


async def test_take_back_replay_reports_the_original_split(session: AsyncSession) -> None:
    user = await create_user(session, credits=30)
    first = await credits.take_back_credits(session, user.id, 50, "stripe_refund", "re_1")
    await credits.add_credits(session, user.id, 100, "admin_grant")
    again = await credits.take_back_credits(session, user.id, 50, "stripe_refund", "re_1")
    await session.commit()
    assert (first.taken, first.shortfall) == (again.taken, again.shortfall) == (30, 20)
    assert again.replayed
    assert again.movement is not None
    assert first.movement is not None
    assert again.movement.id == first.movement.id
    assert await account_state(session, user.id) == (80, 0)
    with pytest.raises(credits.ReferenceConflictError):
        await credits.take_back_credits(session, user.id, 60, "stripe_refund", "re_1")


async def test_a_failed_ledger_write_undoes_the_balance_change(
    db: Database, session: AsyncSession
) -> None:
    """Even a caller that swallows the error and commits keeps the two tables in step."""
    user = await create_user(session, credits=100)
    before = await snapshot(session, user.id)
    async with failing_statement(db.engine, "INSERT INTO credit_transactions"):
        for move, reason, reference in [
            (credits.deduct_credits, "summarize", None),
            (credits.deduct_credits, "summarize", "req-1"),
            (credits.add_credits, "admin_grant", None),
            (credits.add_credits, "admin_grant", "grant-1"),
        ]:
            with pytest.raises(RuntimeError, match="injected failure"):
                await move(session, user.id, 10, reason, reference)
        with pytest.raises(RuntimeError, match="injected failure"):
            await credits.take_back_credits(session, user.id, 10, "stripe_refund", "re_1")
    await session.commit()
    assert await snapshot(session, user.id) == before
    # The references were not consumed by the failed attempts.
    spent = await credits.deduct_credits(session, user.id, 10, "summarize", "req-1")
    assert not spent.replayed


async def test_a_failed_debt_recovery_undoes_the_top_up_too(
    db: Database, session: AsyncSession
) -> None:
    user = await create_user(session, credits=0)
    await credits.take_back_credits(session, user.id, 30, "stripe_refund", "re_1")
    await session.commit()
    before = await snapshot(session, user.id)
    # The top-up's row is the first insert; fail only the recovery row after it.
    inserts = 0

    from sqlalchemy import event

    def fail_second_insert(_c, _cur, statement, *_a) -> None:
        nonlocal inserts
        if statement.lstrip().upper().startswith("INSERT INTO CREDIT_TRANSACTIONS"):
            inserts += 1
            if inserts == 2:
                raise RuntimeError("injected failure")

    event.listen(db.engine.sync_engine, "before_cursor_execute", fail_second_insert)
    try:
        with pytest.raises(RuntimeError):
            await credits.add_credits(session, user.id, 100, "stripe_payment", "cs_1")
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", fail_second_insert)
    await session.commit()
    assert await snapshot(session, user.id) == before


async def test_the_callers_rollback_discards_the_movement(session: AsyncSession) -> None:
    user_id = (await create_user(session, credits=100)).id
    await credits.deduct_credits(session, user_id, 10, "summarize", reference="req-1")
    await session.rollback()
    assert await account_state(session, user_id) == (100, 0)
    count = await session.scalar(select(func.count()).where(CreditTransaction.reference == "req-1"))
    assert count == 0
