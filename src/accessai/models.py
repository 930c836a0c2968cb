"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from accessai.ai.models import UsageRecord
from accessai.auth.models import ApiKey
from accessai.core.db import Base
from accessai.credits.models import CreditTransaction, UserCredits
from accessai.users.models import User

__all__ = ["ApiKey", "Base", "CreditTransaction", "UsageRecord", "User", "UserCredits"]
