"""The only code that moves credits.

Every change of a balance writes one ledger row in the same transaction, so
``balance == sum(ledger amounts)`` holds at every commit. Checks are done by
the database in the statement that changes the balance (``UPDATE ... WHERE
balance >= :amount RETURNING balance``), never read-then-write in Python, so
concurrent requests and replicas cannot overdraw an account.

Functions here ``flush()`` and never ``commit()``: the caller's transaction
decides. A ``reference`` makes a write idempotent per user: repeating it
returns the original movement and changes nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.db import utcnow
from accessai.core.errors import AppError, NotFoundError
from accessai.credits.models import CreditTransaction, UserCredits


class Reason(StrEnum):
    """Why credits moved. Stored on every ledger row."""

    SIGNUP_BONUS = "signup_bonus"
    STRIPE_PAYMENT = "stripe_payment"
    STRIPE_REFUND = "stripe_refund"
    STRIPE_DISPUTE = "stripe_dispute"
    DEBT_RECOVERY = "debt_recovery"
    ADMIN_GRANT = "admin_grant"
    ADMIN_DEDUCT = "admin_deduct"


_REASON_PATTERN = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
SIGNUP_BONUS_REFERENCE = "signup_bonus"


class InsufficientCreditsError(AppError):
    status_code = 402
    code = "insufficient_credits"

    def __init__(self, balance: int, required: int) -> None:
        super().__init__(f"Balance {balance} cannot cover {required} credits.")
        self.balance = balance
        self.required = required

    def body(self) -> dict[str, Any]:
        # The exact public contract: no other keys.
        return {"error": self.code, "balance": self.balance, "required": self.required}


class AccountOnHoldError(AppError):
    """Spending is blocked until credits taken back by a refund or dispute are repaid."""

    status_code = 402
    code = "account_on_hold"

    def __init__(self, debt: int) -> None:
        super().__init__(
            f"This account owes {debt} credits from a refunded or disputed payment; "
            "buy credits to settle it before spending.",
            extra={"debt": debt},
        )


class InvalidAmountError(AppError):
    status_code = 422
    code = "invalid_amount"


@dataclass(frozen=True, slots=True)
class CreditMovement:
    """One ledger row as the callers see it."""

    id: int
    user_id: uuid.UUID
    amount: int
    reason: str
    reference: str | None
    balance_after: int
    created_at: datetime
    # True when an earlier write with the same reference is returned instead.
    replayed: bool = False

    @classmethod
    def from_row(cls, row: CreditTransaction, *, replayed: bool = False) -> CreditMovement:
        return cls(
            id=row.id,
            user_id=row.user_id,
            amount=row.amount,
            reason=row.reason,
            reference=row.reference,
            balance_after=row.balance_after,
            created_at=row.created_at,
            replayed=replayed,
        )


@dataclass(frozen=True, slots=True)
class TakeBack:
    """The outcome of taking purchased credits back (refund, dispute)."""

    movement: CreditMovement | None  # None when the balance was already 0
    taken: int
    shortfall: int  # what the balance could not cover, now owed as debt


def _validate(amount: int, reason: str) -> None:
    # bool is an int in Python; a True amount is a bug, not one credit.
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidAmountError("Credit amounts are positive whole numbers.")
    if not _REASON_PATTERN.match(reason):
        raise InvalidAmountError("A reason is a short lowercase identifier such as 'admin_grant'.")


# --- Accounts ------------------------------------------------------------------


async def open_account(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Create the user's balance row at 0 if it does not exist (safe under races)."""
    values = {"user_id": user_id, "balance": 0, "debt": 0, "updated_at": utcnow()}
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    statement: Any
    if dialect == "postgresql":
        statement = postgresql.insert(UserCredits).values(values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(UserCredits).values(values).on_conflict_do_nothing()
    await session.execute(statement)


async def get_balance(session: AsyncSession, user_id: uuid.UUID) -> int:
    balance = await session.scalar(
        select(UserCredits.balance).where(UserCredits.user_id == user_id)
    )
    return balance or 0


async def get_account(session: AsyncSession, user_id: uuid.UUID) -> UserCredits | None:
    return await session.get(UserCredits, user_id, populate_existing=True)


# --- Movements -----------------------------------------------------------------


async def add_credits(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    reason: str,
    reference: str | None = None,
) -> CreditMovement:
    """Add ``amount`` credits. Debt from a past refund is repaid first, on its own row."""
    _validate(amount, reason)

    async def write() -> tuple[CreditMovement, int]:
        row = (
            await session.execute(
                update(UserCredits)
                .where(UserCredits.user_id == user_id)
                .values(balance=UserCredits.balance + amount, updated_at=utcnow())
                .returning(UserCredits.balance, UserCredits.debt)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        if row is None:
            raise NotFoundError("No credit account for this user.")
        balance, debt = row
        movement = await _record(session, user_id, amount, reason, reference, balance)
        return movement, debt

    movement, debt = await _idempotent(session, user_id, reference, write)
    if debt > 0 and not movement.replayed:
        await _recover_debt(session, user_id, reference or f"movement:{movement.id}")
    return movement


async def deduct_credits(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    reason: str,
    reference: str | None = None,
) -> CreditMovement:
    """Spend ``amount`` credits, or raise ``InsufficientCreditsError`` and change nothing."""
    _validate(amount, reason)

    async def write() -> tuple[CreditMovement, int]:
        balance = await session.scalar(
            update(UserCredits)
            .where(
                UserCredits.user_id == user_id,
                UserCredits.balance >= amount,
                UserCredits.debt == 0,
            )
            .values(balance=UserCredits.balance - amount, updated_at=utcnow())
            .returning(UserCredits.balance)
            .execution_options(synchronize_session=False)
        )
        if balance is None:
            await _raise_refusal(session, user_id, amount)
        assert balance is not None
        return await _record(session, user_id, -amount, reason, reference, balance), 0

    movement, _ = await _idempotent(session, user_id, reference, write)
    return movement


async def take_back_credits(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    reason: str,
    reference: str,
) -> TakeBack:
    """Remove up to ``amount`` credits; what the balance cannot cover becomes debt.

    Used for refunds and disputes: the balance never goes below zero, and an
    account with debt cannot spend until new credits repay it.
    """
    _validate(amount, reason)
    existing = await _find_by_reference(session, user_id, reference)
    if existing is not None:
        return TakeBack(CreditMovement.from_row(existing, replayed=True), -existing.amount, 0)

    # Lock the row: how much can be taken depends on the current balance.
    account = (
        await session.execute(
            select(UserCredits)
            .where(UserCredits.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if account is None:
        raise NotFoundError("No credit account for this user.")
    taken = min(account.balance, amount)
    shortfall = amount - taken
    new_balance = account.balance - taken
    await session.execute(
        update(UserCredits)
        .where(UserCredits.user_id == user_id)
        .values(balance=new_balance, debt=UserCredits.debt + shortfall, updated_at=utcnow())
    )
    movement = None
    if taken > 0:
        movement = await _record(session, user_id, -taken, reason, reference, new_balance)
    return TakeBack(movement, taken, shortfall)


# --- Internals -------------------------------------------------------------------


async def _record(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    reason: str,
    reference: str | None,
    balance_after: int,
) -> CreditMovement:
    row = (
        await session.execute(
            insert(CreditTransaction)
            .values(
                user_id=user_id,
                amount=amount,
                reason=reason,
                reference=reference,
                balance_after=balance_after,
                created_at=utcnow(),
            )
            .returning(CreditTransaction)
        )
    ).scalar_one()
    return CreditMovement.from_row(row)


async def _find_by_reference(
    session: AsyncSession, user_id: uuid.UUID, reference: str
) -> CreditTransaction | None:
    return await session.scalar(
        select(CreditTransaction).where(
            CreditTransaction.user_id == user_id, CreditTransaction.reference == reference
        )
    )


async def _idempotent(
    session: AsyncSession,
    user_id: uuid.UUID,
    reference: str | None,
    write: Any,
) -> tuple[CreditMovement, int]:
    """Run ``write`` once per (user, reference).

    The unique (user_id, reference) constraint is the arbiter: a concurrent
    duplicate fails its insert, its savepoint rolls the balance change back,
    and the original movement is returned instead.
    """
    if reference is None:
        result: tuple[CreditMovement, int] = await write()
        return result
    existing = await _find_by_reference(session, user_id, reference)
    if existing is not None:
        return CreditMovement.from_row(existing, replayed=True), 0
    try:
        async with session.begin_nested():
            result = await write()
    except IntegrityError:
        existing = await _find_by_reference(session, user_id, reference)
        if existing is None:
            raise
        return CreditMovement.from_row(existing, replayed=True), 0
    return result


async def _raise_refusal(session: AsyncSession, user_id: uuid.UUID, required: int) -> None:
    row = (
        await session.execute(
            select(UserCredits.balance, UserCredits.debt).where(UserCredits.user_id == user_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFoundError("No credit account for this user.")
    balance, debt = row
    if debt > 0:
        raise AccountOnHoldError(debt)
    raise InsufficientCreditsError(balance=balance, required=required)


async def _recover_debt(session: AsyncSession, user_id: uuid.UUID, reference: str) -> None:
    """Repay outstanding debt from the balance, as far as it reaches."""
    account = (
        await session.execute(
            select(UserCredits)
            .where(UserCredits.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    repay = min(account.balance, account.debt)
    if repay <= 0:
        return
    new_balance = account.balance - repay
    await session.execute(
        update(UserCredits)
        .where(UserCredits.user_id == user_id)
        .values(balance=new_balance, debt=UserCredits.debt - repay, updated_at=utcnow())
    )
    await _record(
        session, user_id, -repay, Reason.DEBT_RECOVERY, f"debt_recovery:{reference}", new_balance
    )
