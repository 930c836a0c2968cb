"""Plain async factories: each says what it makes."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.config import Settings
from accessai.core.security import issue_access_token
from accessai.users import service as users
from accessai.users.models import User


async def create_user(
    session: AsyncSession,
    *,
    email: str | None = None,
    name: str | None = "Test User",
    google_id: str | None = None,
    credits: int = 100,
) -> User:
    """A committed user with ``credits`` credits (granted as the signup bonus)."""
    user = await users.create_user(
        session,
        email=email or f"user-{uuid.uuid4().hex[:10]}@example.com",
        name=name,
        google_id=google_id,
        signup_bonus=credits,
    )
    await session.commit()
    return user


def auth_headers(settings: Settings, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(settings, user).token}"}
