"""Finding and creating users. A new user gets a credit account and the signup bonus."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.credits import service as credits
from accessai.users.models import User


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == normalize_email(email)))


async def list_users(session: AsyncSession, *, limit: int = 100) -> list[User]:
    return list(await session.scalars(select(User).order_by(User.created_at).limit(limit)))


async def count_users(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(User)) or 0


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    name: str | None = None,
    google_id: str | None = None,
    signup_bonus: int = 0,
) -> User:
    """Insert a user, open their credit account and grant the signup bonus once.

    Raises ``IntegrityError`` when the email or Google id is already taken;
    callers that may race (two first sign-ins) use ``get_or_create_user``.
    """
    user = User(id=uuid.uuid4(), email=normalize_email(email), name=name, google_id=google_id)
    session.add(user)
    await session.flush()
    await credits.open_account(session, user.id)
    if signup_bonus > 0:
        await credits.add_credits(
            session,
            user.id,
            signup_bonus,
            credits.Reason.SIGNUP_BONUS,
            reference=credits.SIGNUP_BONUS_REFERENCE,
        )
    return user


async def get_or_create_user_by_email(
    session: AsyncSession, *, email: str, name: str | None = None, signup_bonus: int = 0
) -> tuple[User, bool]:
    """The user with this email, created if missing. Safe when two callers race."""
    existing = await get_user_by_email(session, email)
    if existing is not None:
        return existing, False
    try:
        async with session.begin_nested():
            user = await create_user(session, email=email, name=name, signup_bonus=signup_bonus)
    except IntegrityError:
        winner = await get_user_by_email(session, email)
        if winner is None:
            raise
        return winner, False
    return user, True
