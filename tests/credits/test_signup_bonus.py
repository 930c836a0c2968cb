"""Free credits on signup: granted once per user, even when first sign-ins race."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.db import create_engine, create_sessionmaker
from accessai.credits import service as credits
from accessai.credits.models import CreditTransaction
from accessai.users import service as users
from accessai.users.models import User
from tests.conftest import TestDatabase as Database
from tests.credits.support import account_state, in_own_session, ledger_rows


async def test_a_new_user_gets_the_bonus_once(session: AsyncSession) -> None:
    user = await users.create_user(session, email="new@example.com", signup_bonus=100)
    await session.commit()
    rows = await ledger_rows(session, user.id)
    assert [(r[1], r[3], r[4], r[5]) for r in rows] == [(100, "signup_bonus", "signup_bonus", 100)]
    # Granting it again by its reference is a replay, not a second bonus.
    again = await credits.add_credits(
        session, user.id, 100, credits.Reason.SIGNUP_BONUS, credits.SIGNUP_BONUS_REFERENCE
    )
    await session.commit()
    assert again.replayed
    assert await account_state(session, user.id) == (100, 0)


async def test_no_bonus_configured_opens_an_empty_account(session: AsyncSession) -> None:
    user = await users.create_user(session, email="zero@example.com", signup_bonus=0)
    await session.commit()
    assert await account_state(session, user.id) == (0, 0)
    assert await ledger_rows(session, user.id) == []


async def test_signing_in_again_grants_nothing(session: AsyncSession) -> None:
    first, created = await users.get_or_create_user_by_email(
        session, email="Back@Example.com", signup_bonus=100
    )
    await session.commit()
    again, created_again = await users.get_or_create_user_by_email(
        session, email="back@example.com ", signup_bonus=100
    )
    await session.commit()
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert await account_state(session, first.id) == (100, 0)


@pytest.mark.parametrize("engines", [1, 2])
async def test_racing_first_sign_ins_create_one_user_with_one_bonus(
    db: Database, session: AsyncSession, engines: int
) -> None:
    other = create_engine(db.url, pool_size=5, max_overflow=0)
    makers = [create_sessionmaker(db.engine), create_sessionmaker(other)][:engines]
    try:
        results = await asyncio.gather(
            *(
                in_own_session(
                    makers[i % engines],
                    lambda s: users.get_or_create_user_by_email(
                        s, email="race@example.com", signup_bonus=100
                    ),
                )
                for i in range(8)
            )
        )
    finally:
        await other.dispose()
    assert all(isinstance(r, tuple) for r in results), results
    assert sum(created for _, created in results) == 1
    assert len({user.id for user, _ in results}) == 1
    user_id = results[0][0].id
    assert await session.scalar(select(func.count()).select_from(User)) == 1
    bonuses = await session.scalar(
        select(func.count()).where(
            CreditTransaction.user_id == user_id, CreditTransaction.reason == "signup_bonus"
        )
    )
    assert bonuses == 1
    assert await account_state(session, user_id) == (100, 0)
