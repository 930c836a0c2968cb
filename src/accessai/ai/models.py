"""The AI endpoints' tables.

``usage_records``: one row per AI request: what was asked, what it cost, how
it went. Shared by the credit-priced endpoints (summarize, analyze) and
token-priced chat, so a user's usage page and totals cover everything they
paid for. A row whose outcome is ``pending`` is a live credit reservation.

``idempotency_keys``: one row per (user, Idempotency-Key) while the key is
in use or its stored response may be replayed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from accessai.core.db import Base, UTCDateTime, utcnow

UsageId = BigInteger().with_variant(Integer, "sqlite")


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        # Newest-first pages per user, and per-day totals over a date range.
        Index("ix_usage_records_user_id_id", "user_id", "id"),
        Index("ix_usage_records_user_id_created_at", "user_id", "created_at"),
        # The sweep finds reservations left pending by a crash.
        Index("ix_usage_records_outcome_created_at", "outcome", "created_at"),
    )

    id: Mapped[int] = mapped_column(UsageId, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(String(32))  # summarize, analyze, chat
    engine: Mapped[str] = mapped_column(String(32))  # local, openai
    model: Mapped[str | None] = mapped_column(String(128))
    input_chars: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    # Credits finally charged for this request (0 when refunded or refused).
    credits_charged: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    time_to_first_token_ms: Mapped[int | None] = mapped_column(Integer)
    # success, engine_error, engine_timeout, engine_unavailable, client_aborted, ...
    outcome: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # The arbiter between concurrent retries: one row per user and key.
        UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),
        # Purging expired keys.
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(UsageId, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(32))
    # SHA-256 (hex) of the canonical request: the same key with another body is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    # in_progress while the first request runs, then completed.
    status: Mapped[str] = mapped_column(String(16))
    usage_id: Mapped[int | None] = mapped_column(
        UsageId, ForeignKey("usage_records.id", ondelete="SET NULL")
    )
    # The stored response, replayed verbatim for a retry.
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
