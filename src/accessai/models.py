"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from accessai.ai.models import IdempotencyKey, UsageRecord
from accessai.core.db import Base
from accessai.credits.models import CreditTransaction, UserCredits
from accessai.users.models import User

__all__ = ["Base", "CreditTransaction", "IdempotencyKey", "UsageRecord", "User", "UserCredits"]
