"""Response bodies of the credit endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from accessai.credits.service import CreditMovement


class TransactionOut(BaseModel):
    id: int
    amount: int = Field(description="Positive: credits added. Negative: credits spent or taken.")
    debt_change: int = Field(
        description="Positive: a refund the balance could not cover. Negative: debt repaid."
    )
    reason: str
    reference: str | None
    note: str | None = Field(description="An operator's explanation, for manual changes.")
    balance_after: int
    created_at: datetime

    @classmethod
    def of(cls, movement: CreditMovement) -> TransactionOut:
        return cls(
            id=movement.id,
            amount=movement.amount,
            debt_change=movement.debt_change,
            reason=movement.reason,
            reference=movement.reference,
            note=movement.note,
            balance_after=movement.balance_after,
            created_at=movement.created_at,
        )


class BalanceOut(BaseModel):
    balance: int
    debt: int = Field(description="Credits owed after a refund or dispute; spending needs 0.")
    on_hold: bool = Field(description="True while debt is above 0: spending is refused.")
    transactions: list[TransactionOut] = Field(description="The latest ledger rows, newest first.")


class TransactionPageOut(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )
