"""Holds in the ledger: take, settle, and sweep what crashed processes left.

Each function is one short transaction of its own (they take a
sessionmaker, not a session), because no transaction may stay open while
the provider works: SQLite takes its write lock at BEGIN and PostgreSQL
would lock the balance row.

Ledger rows per request, all through ``credits.service``:

- take: ``-amount``, reason ``chat_hold``, reference ``chat:<hold id>:hold``;
- settle: ``+(amount - charged)``, reason ``chat_release``, reference
  ``chat:<hold id>:release``, only when positive.

So the request's net effect on the ledger is exactly ``-charged``. The
status flip ``held -> settled`` (or ``held -> released`` by the sweep) is a
conditional UPDATE: whoever flips it writes the release row, nobody else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accessai.ai.models import UsageRecord
from accessai.chat.models import ChatHold, HoldStatus
from accessai.core.db import utcnow
from accessai.credits import service as credits
from accessai.observability.logging import get_logger

log = get_logger("accessai.chat.holds")

CHAT_HOLDS: Table = ChatHold.__table__  # type: ignore[assignment]
HOLD_REASON = "chat_hold"
RELEASE_REASON = "chat_release"
SWEEP_BATCH = 100


def hold_reference(hold_id: uuid.UUID) -> str:
    return f"chat:{hold_id}:hold"


def release_reference(hold_id: uuid.UUID) -> str:
    return f"chat:{hold_id}:release"


@dataclass(frozen=True, slots=True)
class Hold:
    id: uuid.UUID
    user_id: uuid.UUID
    amount: int


@dataclass(slots=True)
class UsageEntry:
    """The usage-log row written with a settlement."""

    model: str
    engine: str
    input_chars: int
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    time_to_first_token_ms: int | None
    outcome: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Settlement:
    charged: int
    released: int
    # False when the sweep had already released the hold: nothing was charged.
    won: bool


async def take_hold(
    statements: async_sessionmaker[AsyncSession],
    *,
    user_id: uuid.UUID,
    amount: int,
    model: str,
    request_id: str | None,
) -> Hold:
    """Deduct ``amount`` and record the hold, or raise ``InsufficientCreditsError``.

    The deduction is the conditional ``UPDATE ... WHERE balance >= amount``,
    so concurrent requests of one user can never hold more than the balance.
    ``statements`` are ``core.db.create_statement_sessionmaker`` sessions:
    the hold and its deduction are one statement on PostgreSQL
    (``credits.spend_with_record``).
    """
    hold = Hold(id=uuid.uuid4(), user_id=user_id, amount=amount)
    row = {
        "id": hold.id,
        "user_id": user_id,
        "amount": amount,
        "status": HoldStatus.HELD,
        "model": model,
        "request_id": request_id,
        "created_at": utcnow(),
    }
    async with statements.begin() as session:
        if amount > 0:
            await credits.spend_with_record(
                session,
                user_id,
                amount,
                HOLD_REASON,
                record=CHAT_HOLDS,
                values=row,
                reference=hold_reference(hold.id),
            )
        else:
            await session.execute(insert(ChatHold).values(row))
    log.info("chat.hold_taken", hold_id=str(hold.id), amount=amount)
    return hold


async def settle_hold(
    sessionmaker: async_sessionmaker[AsyncSession],
    hold: Hold,
    *,
    charged: int,
    usage: UsageEntry,
) -> Settlement:
    """Keep ``charged`` (at most the hold) and release the rest, with its usage row."""
    if not 0 <= charged <= hold.amount:
        raise ValueError(f"charge {charged} is outside the hold of {hold.amount}")
    async with sessionmaker() as session, session.begin():
        flipped = await session.scalar(
            update(ChatHold)
            .where(ChatHold.id == hold.id, ChatHold.status == HoldStatus.HELD)
            .values(status=HoldStatus.SETTLED, charged=charged, settled_at=utcnow())
            .returning(ChatHold.id)
            .execution_options(synchronize_session=False)
        )
        won = flipped is not None
        released = hold.amount - charged if won else 0
        if released > 0:
            # Only the winner of the status flip above writes this reference.
            await credits.add_credits(
                session,
                hold.user_id,
                released,
                RELEASE_REASON,
                release_reference(hold.id),
                fresh_reference=True,
            )
        if not won:
            # The sweep released everything already; this call cost nothing.
            charged, usage.outcome = 0, "hold_expired"
            log.warning("chat.settle_lost_to_sweep", hold_id=str(hold.id))
        session.add(_usage_row(hold.user_id, usage, charged))
    log.info("chat.hold_settled", hold_id=str(hold.id), charged=charged, released=released)
    return Settlement(charged=charged, released=released, won=won)


async def record_refusal(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: uuid.UUID, usage: UsageEntry
) -> None:
    """The usage row of a request refused before any hold (insufficient credits)."""
    async with sessionmaker() as session, session.begin():
        session.add(_usage_row(user_id, usage, 0))


async def release_stale_holds(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    older_than: timedelta,
    now: datetime | None = None,
) -> int:
    """Release in full every hold still open ``older_than`` after it was taken.

    Only a crashed process leaves such a hold: a running request settles
    well within the timeout (settings guarantee the timeout exceeds the
    longest request). Each release is its own transaction; several sweepers
    (replicas) may run at once, the status flip decides. Returns how many
    holds this call released.
    """
    cutoff = (now or utcnow()) - older_than
    released = 0
    while True:
        async with sessionmaker() as session, session.begin():
            stale = list(
                await session.scalars(
                    select(ChatHold.id)
                    .where(ChatHold.status == HoldStatus.HELD, ChatHold.created_at < cutoff)
                    .order_by(ChatHold.created_at)
                    .limit(SWEEP_BATCH)
                )
            )
        for hold_id in stale:
            if await _release(sessionmaker, hold_id):
                released += 1
        if len(stale) < SWEEP_BATCH:
            return released


async def _release(sessionmaker: async_sessionmaker[AsyncSession], hold_id: uuid.UUID) -> bool:
    async with sessionmaker() as session, session.begin():
        row = (
            await session.execute(
                update(ChatHold)
                .where(ChatHold.id == hold_id, ChatHold.status == HoldStatus.HELD)
                .values(status=HoldStatus.RELEASED, settled_at=utcnow())
                .returning(ChatHold.user_id, ChatHold.amount)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        if row is None:
            return False  # settled, or another sweeper got there first
        user_id, amount = row
        if amount > 0:
            await credits.add_credits(
                session, user_id, amount, RELEASE_REASON, release_reference(hold_id)
            )
    log.warning("chat.stale_hold_released", hold_id=str(hold_id), amount=amount)
    return True


def _usage_row(user_id: uuid.UUID, usage: UsageEntry, charged: int) -> UsageRecord:
    return UsageRecord(
        user_id=user_id,
        endpoint="chat",
        engine=usage.engine,
        model=usage.model,
        input_chars=usage.input_chars,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        credits_charged=charged,
        latency_ms=usage.latency_ms,
        time_to_first_token_ms=usage.time_to_first_token_ms,
        outcome=usage.outcome,
        request_id=usage.request_id,
        created_at=utcnow(),
    )
