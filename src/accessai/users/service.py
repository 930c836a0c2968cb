"""Finding and creating users. A new user gets a credit account and the signup bonus."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.errors import ConflictError
from accessai.credits import service as credits
from accessai.observability.logging import get_logger
from accessai.users.models import User

log = get_logger("accessai.users")

# Attempts at the find-or-create of a first sign-in; one retry covers losing a race.
_SIGN_IN_ATTEMPTS = 2


class EmailInUseError(ConflictError):
    code = "email_in_use"


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == normalize_email(email)))


async def get_user_by_google_id(session: AsyncSession, google_id: str) -> User | None:
    return await session.scalar(select(User).where(User.google_id == google_id))


async def list_users(session: AsyncSession, *, limit: int = 100) -> list[User]:
    return list(await session.scalars(select(User).order_by(User.created_at).limit(limit)))


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
            fresh_reference=True,  # the user was created just above
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


async def get_or_create_user_by_google_id(
    session: AsyncSession,
    *,
    google_id: str,
    email: str,
    name: str | None = None,
    signup_bonus: int = 0,
) -> tuple[User, bool]:
    """The user Google knows as ``google_id``, created on first sign-in. Race-safe.

    Found by subject id: email and name follow Google's current values.
    Not found but the (verified) email belongs to a user with no Google id
    (made by the CLI): that user is linked. Otherwise a new user is created
    with the signup bonus. When two first sign-ins race, the database's
    unique constraints pick one winner and the loser returns the winner's row.
    """
    email = normalize_email(email)
    for _attempt in range(_SIGN_IN_ATTEMPTS):
        user = await get_user_by_google_id(session, google_id)
        if user is not None:
            await _follow_profile(session, user, email=email, name=name)
            return user, False

        by_email = await get_user_by_email(session, email)
        if by_email is not None:
            if by_email.google_id is not None:
                raise EmailInUseError(
                    "This email address already belongs to an account that signs in with "
                    "another Google account."
                )
            if await _link_google_id(session, by_email, google_id=google_id, name=name):
                return by_email, False
            continue  # a concurrent sign-in linked or created it first: look again

        try:
            async with session.begin_nested():
                created = await create_user(
                    session,
                    email=email,
                    name=name,
                    google_id=google_id,
                    signup_bonus=signup_bonus,
                )
        except IntegrityError:
            continue  # a concurrent sign-in won: look again
        return created, True
    raise ConflictError("Another sign-in for this account is in progress; try again.")


async def _link_google_id(
    session: AsyncSession, user: User, *, google_id: str, name: str | None
) -> bool:
    try:
        async with session.begin_nested():
            user.google_id = google_id
            if name:
                user.name = name
            await session.flush()
    except IntegrityError:
        await session.refresh(user)
        return False
    log.info("users.google_linked", user_id=str(user.id))
    return True


async def _follow_profile(
    session: AsyncSession, user: User, *, email: str, name: str | None
) -> None:
    """Follow Google's email and name; keep the old email if another user holds the new one."""
    if name and user.name != name:
        user.name = name
        await session.flush()
    if user.email == email:
        return
    try:
        async with session.begin_nested():
            user.email = email
            await session.flush()
    except IntegrityError:
        await session.refresh(user)
        log.warning("users.email_update_conflict", user_id=str(user.id))
