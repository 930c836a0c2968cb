"""Find-or-create by Google subject id, including two first sign-ins racing."""

from __future__ import annotations

import asyncio
from typing import Any

from accessai.core.db import create_sessionmaker
from accessai.credits.models import CreditTransaction
from accessai.users import service as users
from accessai.users.models import User
from tests.support.databases import wait_for_lock_waiter
from tests.support.rows import count_rows


async def test_racing_first_sign_ins_create_one_user_with_one_bonus(db: Any) -> None:
    maker = create_sessionmaker(db.engine)
    async with maker() as first, maker() as second:
        winner, created = await users.get_or_create_user_by_google_id(
            first, google_id="google-ada", email="ada@example.com", name="Ada", signup_bonus=100
        )
        assert created
        # The second sign-in starts while the first one's insert is not committed yet.
        racer = asyncio.create_task(
            users.get_or_create_user_by_google_id(
                second, google_id="google-ada", email="ada@example.com", signup_bonus=100
            )
        )
        if db.kind == "postgresql":
            # It must hit the unique constraint, not merely find the committed row.
            await wait_for_lock_waiter(
                db.engine,
                attempts=200,
                interval=0.02,
                message="the second sign-in never waited for the first one's insert",
            )
        await first.commit()
        loser, loser_created = await racer
        await second.commit()

    assert (loser.id, loser_created) == (winner.id, False)
    assert await count_rows(db.engine, User) == 1
    assert await count_rows(db.engine, CreditTransaction) == 1


async def test_racing_sign_ins_with_the_same_email_and_different_accounts(db: Any) -> None:
    maker = create_sessionmaker(db.engine)
    async with maker() as first, maker() as second:
        await users.get_or_create_user_by_google_id(
            first, google_id="google-one", email="shared@example.com"
        )
        racer = asyncio.create_task(
            users.get_or_create_user_by_google_id(
                second, google_id="google-two", email="shared@example.com"
            )
        )
        if db.kind == "postgresql":
            await wait_for_lock_waiter(
                db.engine,
                attempts=200,
                interval=0.02,
                message="the second sign-in never waited for the first one's insert",
            )
        await first.commit()
        try:
            await racer
        except users.EmailInUseError:
            pass
        else:
            raise AssertionError("a second account took an email that is already in use")
        await second.rollback()
    assert await count_rows(db.engine, User) == 1


async def test_a_known_subject_follows_email_and_name_changes(session: Any) -> None:
    user, _ = await users.get_or_create_user_by_google_id(
        session, google_id="google-ada", email="ada@example.com", name="Ada"
    )
    again, created = await users.get_or_create_user_by_google_id(
        session, google_id="google-ada", email="ADA@new.example.com", name="Ada L."
    )
    assert (again.id, created) == (user.id, False)
    assert (again.email, again.name) == ("ada@new.example.com", "Ada L.")
    await session.commit()
