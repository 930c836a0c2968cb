"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from accessai.ai.models import IdempotencyKey, UsageRecord
from accessai.auth.models import ApiKey
from accessai.chat.models import ChatHold
from accessai.core.db import Base
from accessai.credits.models import CreditTransaction, UserCredits
from accessai.payments.models import Payment, StripeEvent
from accessai.users.models import User

__all__ = [
    "ApiKey",
    "Base",
    "ChatHold",
    "CreditTransaction",
    "IdempotencyKey",
    "Payment",
    "StripeEvent",
    "UsageRecord",
    "User",
    "UserCredits",
]
