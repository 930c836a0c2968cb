"""The only code that moves credits.

Every change of a balance writes one ledger row in the same transaction, so
``balance == sum(ledger amounts)`` holds at every commit. Checks are done by
the database in the statement that changes the balance (``UPDATE ... WHERE
balance >= :amount RETURNING balance``), never read-then-write in Python, so
concurrent requests and replicas cannot overdraw an account.

Each movement runs inside a savepoint, or is a single statement
(``spend_with_record`` on PostgreSQL): the balance change and its ledger row
are undone together if anything in between fails, even when the caller
catches the error and commits the rest of its transaction.

Functions here ``flush()`` and never ``commit()``: the caller's transaction
decides. A ``reference`` makes a write idempotent per user: repeating it
returns the original movement and changes nothing; reusing it for a
different movement is refused (``ReferenceConflictError``).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from accessai.core.db import UTCDateTime, newest_first, utcnow
from accessai.core.errors import AppError, ConflictError, NotFoundError
from accessai.credits.models import CreditTransaction, UserCredits
from accessai.users.models import User

T = TypeVar("T")


class Reason(StrEnum):
    """Why credits moved. Stored on every ledger row.

    Spending rows use the feature's own code (``summarize``, ``analyze``,
    ``chat``...), so this list is not closed: any short lowercase code is valid.
    """

    SIGNUP_BONUS = "signup_bonus"
    STRIPE_PAYMENT = "stripe_payment"
    STRIPE_REFUND = "stripe_refund"
    STRIPE_DISPUTE = "stripe_dispute"
    DEBT_RECOVERY = "debt_recovery"
    ADMIN_GRANT = "admin_grant"
    ADMIN_DEDUCT = "admin_deduct"


REASON_PATTERN = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
SIGNUP_BONUS_REFERENCE = "signup_bonus"
# One movement at most this large: far below the 32-bit balance column, so a
# typo in an operator command is refused instead of overflowing the database.
MAX_AMOUNT = 1_000_000_000
MAX_REFERENCE_LENGTH = 255
MAX_NOTE_LENGTH = 500
# A refused deduction re-reads the balance to report it; when a concurrent
# top-up made it sufficient in between, the deduction is tried again.
_DEDUCT_ATTEMPTS = 5


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
        self.debt = debt


class InvalidAmountError(AppError):
    """A movement's amount, reason, reference or note is not acceptable."""

    status_code = 422
    code = "invalid_amount"


class ReferenceConflictError(ConflictError):
    """A reference already names a different movement of this user's credits."""

    code = "reference_conflict"

    def __init__(self, reference: str) -> None:
        super().__init__(
            "This reference was already used for a different credit movement.",
            extra={"reference": reference},
        )


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
    # How the row changed the account's debt (refunds, debt recovery).
    debt_change: int = 0
    note: str | None = None

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
            debt_change=row.debt_change,
            note=row.note,
        )


@dataclass(frozen=True, slots=True)
class TakeBack:
    """The outcome of taking purchased credits back (refund, dispute)."""

    movement: CreditMovement | None  # None when the balance was already 0
    taken: int
    shortfall: int  # what the balance could not cover, now owed as debt
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class RecordedSpend:
    """What ``spend_with_record`` wrote: the record's id and the balance after the spend."""

    record_id: Any
    balance: int


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """Newest-first ledger rows; ``next_before_id`` is None on the last page."""

    items: list[CreditMovement]
    next_before_id: int | None


def _validate(
    amount: int, reason: str, reference: str | None = None, note: str | None = None
) -> None:
    # bool is an int in Python; a True amount is a bug, not one credit.
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidAmountError(f"Credit amounts are whole numbers from 1 to {MAX_AMOUNT}.")
    if not isinstance(reason, str) or not REASON_PATTERN.match(reason):
        raise InvalidAmountError("A reason is a short lowercase identifier such as 'admin_grant'.")
    if reference is not None and not (
        isinstance(reference, str) and 0 < len(reference) <= MAX_REFERENCE_LENGTH
    ):
        raise InvalidAmountError(f"A reference is 1 to {MAX_REFERENCE_LENGTH} characters.")
    if note is not None and not (isinstance(note, str) and 0 < len(note) <= MAX_NOTE_LENGTH):
        raise InvalidAmountError(f"A note is 1 to {MAX_NOTE_LENGTH} characters.")


# --- Accounts ------------------------------------------------------------------


async def open_account(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Create the user's balance row at 0 if it does not exist (safe under races)."""
    values = {"user_id": user_id, "balance": 0, "debt": 0, "updated_at": utcnow()}
    statement: Any
    if session.get_bind().dialect.name == "postgresql":
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
    *,
    note: str | None = None,
    fresh_reference: bool = False,
) -> CreditMovement:
    """Add ``amount`` credits. Debt from a past refund is repaid first, on its own row.

    ``fresh_reference=True``: the caller guarantees no earlier movement
    carries ``reference`` (only the winner of a conditional status flip
    writes it), so the lookup for a repeat before the write is skipped. The
    unique (user_id, reference) constraint still refuses a duplicate.
    """
    _validate(amount, reason, reference, note)

    async def write() -> CreditMovement:
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
        movement = await _record(session, user_id, amount, reason, reference, balance, note=note)
        if debt > 0:
            # The UPDATE above holds the row lock, so balance and debt are current.
            await _repay_debt(session, user_id, min(balance, debt), movement.id)
        return movement

    return await _once(
        session,
        user_id,
        reference,
        write,
        replay=lambda row: CreditMovement.from_row(row, replayed=True),
        same=lambda row: row.reason == reason and row.amount == amount,
        look_first=not fresh_reference,
    )


async def deduct_credits(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    reason: str,
    reference: str | None = None,
    *,
    note: str | None = None,
) -> CreditMovement:
    """Spend ``amount`` credits, or raise ``InsufficientCreditsError`` and change nothing.

    An account with debt raises ``AccountOnHoldError`` instead.
    """
    _validate(amount, reason, reference, note)

    async def write() -> CreditMovement:
        balance = await _debit(session, user_id, amount)
        return await _record(session, user_id, -amount, reason, reference, balance, note=note)

    return await _once(
        session,
        user_id,
        reference,
        write,
        replay=lambda row: CreditMovement.from_row(row, replayed=True),
        same=lambda row: row.reason == reason and row.amount == -amount,
    )


async def spend_with_record(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    reason: str,
    *,
    record: Table,
    values: dict[str, Any],
    reference: str,
) -> RecordedSpend:
    """Spend ``amount`` and insert the row the spend pays for, in one unit.

    ``record`` is the table of that row (a usage row, a hold) with an ``id``
    primary key, ``values`` its columns. The ledger row's reference is
    ``reference`` with ``{id}`` replaced by the new row's id, so the ledger
    names what each spend bought. The reference must be new (it names a row
    this call creates), so there is no repeat to look for; the unique
    constraint still refuses a duplicate.

    On PostgreSQL this is one statement (data-modifying CTEs: the guarded
    balance update, the record, the ledger row), atomic without a
    transaction around it: the metered hot path's single round trip. On
    SQLite, which has no data-modifying CTEs, it is the same three writes in
    a savepoint. Refusals raise as ``deduct_credits`` does and write nothing.
    """
    _validate(amount, reason, reference.replace("{id}", "0"))
    if session.get_bind().dialect.name == "postgresql":
        return await _spend_with_record_in_one_statement(
            session, user_id, amount, reason, record, values, reference
        )
    async with session.begin_nested():
        balance = await _debit(session, user_id, amount)
        record_id = await session.scalar(insert(record).values(values).returning(record.c.id))
        await _record(
            session, user_id, -amount, reason, reference.replace("{id}", str(record_id)), balance
        )
    return RecordedSpend(record_id=record_id, balance=balance)


async def take_back_credits(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    reason: str,
    reference: str,
) -> TakeBack:
    """Remove up to ``amount`` credits; what the balance cannot cover becomes debt.

    Used for refunds and disputes: the balance never goes below zero, and an
    account with debt cannot spend until new credits repay it. One ledger row
    records both parts (``amount`` = -taken, ``debt_change`` = shortfall), so
    a repeated call with the same reference is a no-op even when nothing
    could be taken.
    """
    if reference is None:
        raise InvalidAmountError("Taking credits back needs a reference.")
    _validate(amount, reason, reference)

    async def write() -> TakeBack:
        # Lock the row: how much can be taken depends on the current balance.
        # (SQLite has no FOR UPDATE; its writers are serialised by BEGIN IMMEDIATE.)
        current = (
            await session.execute(
                select(UserCredits.balance).where(UserCredits.user_id == user_id).with_for_update()
            )
        ).scalar_one_or_none()
        if current is None:
            raise NotFoundError("No credit account for this user.")
        taken = min(current, amount)
        shortfall = amount - taken
        balance = (
            await session.execute(
                update(UserCredits)
                .where(UserCredits.user_id == user_id)
                .values(
                    balance=UserCredits.balance - taken,
                    debt=UserCredits.debt + shortfall,
                    updated_at=utcnow(),
                )
                .returning(UserCredits.balance)
                .execution_options(synchronize_session=False)
            )
        ).scalar_one()
        movement = await _record(
            session, user_id, -taken, reason, reference, balance, debt_change=shortfall
        )
        return TakeBack(movement if taken > 0 else None, taken, shortfall)

    def replay(row: CreditTransaction) -> TakeBack:
        movement = CreditMovement.from_row(row, replayed=True)
        return TakeBack(
            movement if row.amount != 0 else None, -row.amount, row.debt_change, replayed=True
        )

    return await _once(
        session,
        user_id,
        reference,
        write,
        replay=replay,
        same=lambda row: row.reason == reason and row.debt_change - row.amount == amount,
    )


# --- Reading the ledger -----------------------------------------------------------


async def list_transactions(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    limit: int = 20,
    before_id: int | None = None,
    reason: str | None = None,
) -> LedgerPage:
    """One page of the user's ledger, newest first, strictly older than ``before_id``.

    Keyset pagination on the row id: each page is one range scan of the
    (user_id, id) or (user_id, reason, id) index, however long the history.
    A user's ids grow in commit order (every write first locks the user's
    balance row), so rows committed between page fetches appear only before
    the first page, never as gaps or duplicates further down.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    statement = newest_first(
        session, select(CreditTransaction), CreditTransaction.id, CreditTransaction.user_id, user_id
    )
    if reason is not None:
        statement = statement.where(CreditTransaction.reason == reason)
    if before_id is not None:
        statement = statement.where(CreditTransaction.id < before_id)
    rows = list(await session.scalars(statement.limit(limit + 1)))
    items = [CreditMovement.from_row(row) for row in rows[:limit]]
    next_before_id = items[-1].id if len(rows) > limit else None
    return LedgerPage(items=items, next_before_id=next_before_id)


class MismatchKind(StrEnum):
    BALANCE = "balance_differs_from_ledger"
    DEBT = "debt_differs_from_ledger"
    NEGATIVE_BALANCE = "negative_balance"
    NEGATIVE_DEBT = "negative_debt"
    DEBT_WITH_BALANCE = "debt_while_balance_positive"
    BROKEN_CHAIN = "balance_after_chain_broken"
    NO_ACCOUNT = "ledger_rows_without_account"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One broken invariant for one user."""

    user_id: uuid.UUID
    email: str | None
    kind: MismatchKind
    detail: str

    def __str__(self) -> str:
        return f"{self.email or '-'} ({self.user_id}): {self.kind}: {self.detail}"


async def verify_ledger(session: AsyncSession) -> list[Mismatch]:
    """Check every account against its ledger; an empty list means all is well.

    Three statements, each a full scan however many users there are (no
    query per user), each consistent on its own snapshot, so running it
    next to live traffic reports no false mismatches:

    1. balances and debts against ``SUM(amount)`` / ``SUM(debt_change)``
       grouped by user, plus the sign rules;
    2. every row's ``balance_after`` against the running sum of amounts up to
       it (a window function), reporting the first broken row per user;
    3. ledger rows whose user has no balance row.
    """
    mismatches: list[Mismatch] = []
    ledger = (
        select(
            CreditTransaction.user_id.label("user_id"),
            func.sum(CreditTransaction.amount).label("total"),
            func.sum(CreditTransaction.debt_change).label("debt_total"),
        )
        .group_by(CreditTransaction.user_id)
        .subquery()
    )
    total = func.coalesce(ledger.c.total, 0)
    debt_total = func.coalesce(ledger.c.debt_total, 0)
    accounts = await session.execute(
        select(
            UserCredits.user_id,
            User.email,
            UserCredits.balance,
            UserCredits.debt,
            total,
            debt_total,
        )
        .outerjoin(ledger, ledger.c.user_id == UserCredits.user_id)
        .outerjoin(User, User.id == UserCredits.user_id)
        .where(
            or_(
                UserCredits.balance != total,
                UserCredits.debt != debt_total,
                UserCredits.balance < 0,
                UserCredits.debt < 0,
                and_(UserCredits.debt > 0, UserCredits.balance > 0),
            )
        )
        .order_by(UserCredits.user_id)
    )
    for user_id, email, balance, debt, summed, summed_debt in accounts:
        found = []
        if balance != summed:
            found.append((MismatchKind.BALANCE, f"balance {balance}, ledger sums to {summed}"))
        if debt != summed_debt:
            found.append((MismatchKind.DEBT, f"debt {debt}, ledger debt sums to {summed_debt}"))
        if balance < 0:
            found.append((MismatchKind.NEGATIVE_BALANCE, f"balance {balance}"))
        if debt < 0:
            found.append((MismatchKind.NEGATIVE_DEBT, f"debt {debt}"))
        if debt > 0 and balance > 0:
            found.append(
                (MismatchKind.DEBT_WITH_BALANCE, f"debt {debt} unpaid with balance {balance}")
            )
        mismatches.extend(Mismatch(user_id, email, kind, detail) for kind, detail in found)

    running = (
        select(
            CreditTransaction.id.label("id"),
            CreditTransaction.user_id.label("user_id"),
            CreditTransaction.balance_after.label("balance_after"),
            func.sum(CreditTransaction.amount)
            .over(partition_by=CreditTransaction.user_id, order_by=CreditTransaction.id)
            .label("running"),
        )
    ).subquery()
    broken = await session.execute(
        select(running.c.user_id, User.email, func.count(), func.min(running.c.id))
        .outerjoin(User, User.id == running.c.user_id)
        .where(running.c.running != running.c.balance_after)
        .group_by(running.c.user_id, User.email)
        .order_by(running.c.user_id)
    )
    for user_id, email, count, first_id in broken:
        mismatches.append(
            Mismatch(
                user_id,
                email,
                MismatchKind.BROKEN_CHAIN,
                f"{count} row(s) whose balance_after is not the running sum, first id {first_id}",
            )
        )

    orphans = await session.execute(
        select(CreditTransaction.user_id, func.count(), func.sum(CreditTransaction.amount))
        .where(~exists().where(UserCredits.user_id == CreditTransaction.user_id))
        .group_by(CreditTransaction.user_id)
        .order_by(CreditTransaction.user_id)
    )
    for user_id, count, summed in orphans:
        mismatches.append(
            Mismatch(
                user_id,
                None,
                MismatchKind.NO_ACCOUNT,
                f"{count} ledger row(s) summing to {summed} but no balance row",
            )
        )
    return mismatches


# --- Internals -------------------------------------------------------------------


async def _record(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    reason: str,
    reference: str | None,
    balance_after: int,
    *,
    debt_change: int = 0,
    note: str | None = None,
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
                debt_change=debt_change,
                note=note,
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


async def _once(
    session: AsyncSession,
    user_id: uuid.UUID,
    reference: str | None,
    write: Callable[[], Awaitable[T]],
    *,
    replay: Callable[[CreditTransaction], T],
    same: Callable[[CreditTransaction], bool],
    look_first: bool = True,
) -> T:
    """Run ``write`` in a savepoint, at most once per (user, reference).

    The savepoint makes the balance change and its ledger row one unit even
    inside a longer transaction. The unique (user_id, reference) constraint
    is the arbiter between concurrent duplicates: the loser's insert fails,
    its savepoint rolls its balance change back, and the winner's movement
    is returned instead. ``same`` tells a true repeat from a reference
    reused for a different movement.
    """

    async def earlier() -> T | None:
        assert reference is not None
        row = await _find_by_reference(session, user_id, reference)
        if row is None:
            return None
        if not same(row):
            raise ReferenceConflictError(reference)
        return replay(row)

    if reference is not None and look_first and (found := await earlier()) is not None:
        return found
    try:
        async with session.begin_nested():
            return await write()
    except IntegrityError:
        if reference is None or (found := await earlier()) is None:
            raise
        return found


async def _debit(session: AsyncSession, user_id: uuid.UUID, amount: int) -> int:
    """The guarded balance update; the new balance, or the refusal raised."""
    for _ in range(_DEDUCT_ATTEMPTS):
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
        if balance is not None:
            return balance
        await _raise_refusal(session, user_id, amount)
    # Only reachable when concurrent top-ups keep arriving between our
    # attempts; refusing is safe, the caller may simply try again.
    raise InsufficientCreditsError(balance=await get_balance(session, user_id), required=amount)


async def _spend_with_record_in_one_statement(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    reason: str,
    record: Table,
    values: dict[str, Any],
    reference: str,
) -> RecordedSpend:
    """``spend_with_record`` for PostgreSQL: one ``WITH ... UPDATE/INSERT ... SELECT``."""
    prefix, placeholder, suffix = reference.partition("{id}")
    statement = _spend_statement(record, tuple(values), bool(placeholder))
    parameters = {f"record_{name}": value for name, value in values.items()}
    parameters.update(
        spend_user_id=user_id,
        spend_amount=amount,
        spend_reason=reason,
        spend_reference_prefix=prefix,
        spend_reference_suffix=suffix,
        spend_now=utcnow(),
    )
    for _ in range(_DEDUCT_ATTEMPTS):
        row = (await session.execute(statement, parameters)).one_or_none()
        if row is None:
            raise NotFoundError("No credit account for this user.")
        seen_balance, seen_debt, balance, record_id = row
        if balance is not None:
            return RecordedSpend(record_id=record_id, balance=balance)
        if seen_debt > 0:
            raise AccountOnHoldError(seen_debt)
        if seen_balance < amount:
            raise InsufficientCreditsError(balance=seen_balance, required=amount)
        # The snapshot had enough but a concurrent spend committed first: look again.
    raise InsufficientCreditsError(balance=await get_balance(session, user_id), required=amount)


@functools.cache
def _spend_statement(record: Table, columns: tuple[str, ...], id_in_reference: bool) -> Select[Any]:
    """The statement of ``_spend_with_record_in_one_statement``, built once per record shape.

    Built from bound parameters only, so each request merely executes it:
    constructing a statement of this size (and its cache key) cost more
    than the database round trip itself.

    The outer SELECT reads the account as the statement's snapshot saw it,
    to explain a refusal; the CTEs write only when the guarded UPDATE
    matched, and all of them or none commit.
    """
    user_id = bindparam("spend_user_id", type_=UserCredits.user_id.type)
    amount = bindparam("spend_amount", type_=Integer())
    now = bindparam("spend_now", type_=UTCDateTime())
    debit = (
        update(UserCredits)
        .where(UserCredits.user_id == user_id, UserCredits.balance >= amount, UserCredits.debt == 0)
        .values(balance=UserCredits.balance - amount, updated_at=now)
        .returning(UserCredits.balance)
        .cte("debit")
    )
    recorded = (
        insert(record)
        .from_select(
            list(columns),
            select(
                *(bindparam(f"record_{name}", type_=record.c[name].type) for name in columns)
            ).select_from(debit),
        )
        .returning(record.c.id)
        .cte("recorded")
    )
    reference: ColumnElement[str] = bindparam("spend_reference_prefix", type_=String())
    if id_in_reference:
        reference = (
            reference
            + cast(recorded.c.id, String)
            + bindparam("spend_reference_suffix", type_=String())
        )
    ledger = (
        insert(CreditTransaction)
        .from_select(
            [
                "user_id",
                "amount",
                "reason",
                "reference",
                "balance_after",
                "debt_change",
                "created_at",
            ],
            select(
                user_id,
                -amount,
                bindparam("spend_reason", type_=String()),
                reference,
                debit.c.balance,
                literal(0),
                now,
            ).select_from(debit.join(recorded, true())),
        )
        .returning(CreditTransaction.id)
        .cte("ledger")
    )
    account = UserCredits.__table__.alias("account")
    return (
        select(account.c.balance, account.c.debt, debit.c.balance, recorded.c.id)
        .select_from(account.outerjoin(debit, true()).outerjoin(recorded, true()))
        .where(account.c.user_id == user_id)
        # A data-modifying CTE runs whether or not it is read; render it too.
        .add_cte(ledger)
    )


async def _raise_refusal(session: AsyncSession, user_id: uuid.UUID, required: int) -> None:
    """Raise why a deduction matched no row; return if it could succeed now."""
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
    if balance < required:
        raise InsufficientCreditsError(balance=balance, required=required)


async def _repay_debt(
    session: AsyncSession, user_id: uuid.UUID, repay: int, movement_id: int
) -> None:
    """Repay ``repay`` credits of debt from the balance, on a row of its own."""
    if repay <= 0:
        return
    balance = (
        await session.execute(
            update(UserCredits)
            .where(UserCredits.user_id == user_id)
            .values(
                balance=UserCredits.balance - repay,
                debt=UserCredits.debt - repay,
                updated_at=utcnow(),
            )
            .returning(UserCredits.balance)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    await _record(
        session,
        user_id,
        -repay,
        Reason.DEBT_RECOVERY,
        f"debt_recovery:{movement_id}",
        balance,
        debt_change=-repay,
    )
