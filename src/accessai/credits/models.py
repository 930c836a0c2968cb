"""Credit balances and the append-only ledger that explains them.

Invariant, for every user at every commit: ``balance == sum(ledger amounts)``
and ``balance >= 0`` (the latter enforced by the database). Only
``accessai.credits.service`` writes these tables.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from accessai.core.db import Base, UTCDateTime, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY.
LedgerId = BigInteger().with_variant(Integer, "sqlite")


class UserCredits(Base):
    __tablename__ = "user_credits"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("debt >= 0", name="debt_not_negative"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(Integer, default=0)
    # Credits taken back by a refund or dispute that the balance could not
    # cover. While it is above zero the account cannot spend; new credits pay
    # it down first.
    debt: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CreditTransaction(Base):
    __tablename__ = "credit_transactions"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        # A write with a reference happens at most once per user.
        UniqueConstraint("user_id", "reference", name="uq_credit_transactions_user_reference"),
        # Newest-first pages per user (keyset on id), optionally by reason.
        Index("ix_credit_transactions_user_id_id", "user_id", "id"),
        Index("ix_credit_transactions_user_id_reason_id", "user_id", "reason", "id"),
    )

    id: Mapped[int] = mapped_column(LedgerId, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    # Positive: credits added. Negative: credits spent or taken back.
    amount: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(255))
    balance_after: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
