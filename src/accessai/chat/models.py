"""Credit holds of chat requests in flight.

A hold is taken (and its credits deducted) before the provider is called and
settled after it: the request's actual cost stays spent and the rest is
released. The row outlives the request, so a hold left by a crashed process
is found and released by the sweep.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from accessai.core.db import Base, UTCDateTime, utcnow


class HoldStatus(StrEnum):
    HELD = "held"  # credits deducted, request in flight
    SETTLED = "settled"  # the request charged ``charged`` and released the rest
    RELEASED = "released"  # the sweep released it in full (its process died)


class ChatHold(Base):
    __tablename__ = "chat_holds"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("charged >= 0 AND charged <= amount", name="charged_within_amount"),
        CheckConstraint("status IN ('held', 'settled', 'released')", name="status_known"),
        # The sweep looks for old open holds.
        Index("ix_chat_holds_status_created_at", "status", "created_at"),
        Index("ix_chat_holds_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    # The most the request can cost, deducted when the hold was taken.
    amount: Mapped[int] = mapped_column(Integer)
    # What the request finally cost; None while held and after a sweep release.
    charged: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=HoldStatus.HELD)
    model: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
