"""Request and response bodies of the payments API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class PackageOut(BaseModel):
    id: str = Field(examples=["starter"])
    name: str
    credits: int
    price_cents: int
    currency: str


class PackagesOut(BaseModel):
    packages: list[PackageOut]


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    package: str = Field(min_length=1, max_length=64, examples=["starter"])


class CheckoutOut(BaseModel):
    checkout_url: str
    session_id: str


class WebhookAck(BaseModel):
    received: bool = True
    # What the event did: credited, duplicate, ignored, ... (see HOW-IT-WORKS).
    outcome: str


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    package: str
    credits: int
    amount_cents: int
    currency: str
    status: str
    refunded_cents: int
    credits_reversed: int
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None


class LedgerRowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    amount: int
    reason: str
    reference: str | None
    balance_after: int
    created_at: datetime


class PaymentHistoryOut(BaseModel):
    payments: list[PaymentOut]
    ledger: list[LedgerRowOut]
