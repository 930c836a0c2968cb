"""Credit balances and the append-only ledger that explains them.

Invariants, for every user at every commit: ``balance == sum(ledger amounts)``,
``debt == sum(ledger debt_change)``, every row's ``balance_after`` is the
running sum up to it, and ``balance >= 0`` (enforced by the database). Only
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
        # A row moves the balance, the debt, or both (a refund against an
        # empty balance moves only the debt, and still needs its row so that
        # a retried refund finds its reference and does nothing).
        CheckConstraint("amount <> 0 OR debt_change <> 0", name="moves_balance_or_debt"),
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
    # Change of the account's debt: positive when a refund or dispute could
    # not be covered by the balance, negative when debt is repaid.
    # Invariant: user_credits.debt == sum(debt_change).
    debt_change: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Free text from an operator (CLI grants and deductions), shown to the user.
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
