"""`accessai credits ...` against the test database, through Typer's CliRunner.

The CLI reads its settings from the environment (``load_settings``, not the
cached ``get_settings``), so each test points it at the test database with
monkeypatch. The runner is called in a worker thread because the CLI starts
its own event loop (``asyncio.run``).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner, Result

from accessai.cli import app
from accessai.credits import service as credits
from accessai.credits.models import UserCredits
from tests.conftest import TestDatabase as Database
from tests.credits.support import account_state, ledger_rows
from tests.factories import create_user
from tests.support.settings import TEST_JWT_SECRET


@pytest.fixture(autouse=True)
def cli_environment(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("SIGNUP_BONUS_CREDITS", "100")


async def cli(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_grant_adds_credits_with_the_operators_note(session: AsyncSession) -> None:
    user = await create_user(session, email="ann@example.com", credits=100)
    result = await cli("credits", "grant", "ANN@example.com", "50", "--reason", "outage refund")
    assert result.exit_code == 0, result.output
    assert "granted" in result.stdout
    assert await account_state(session, user.id) == (150, 0)
    last = (await credits.list_transactions(session, user.id, limit=1)).items[0]
    assert (last.amount, last.reason, last.note, last.reference) == (
        50,
        "admin_grant",
        "outage refund",
        None,
    )


async def test_grant_with_a_reference_is_idempotent(session: AsyncSession) -> None:
    user = await create_user(session, email="ann@example.com", credits=0)
    for _ in range(2):
        result = await cli(
            "credits", "grant", "ann@example.com", "30", "--reason", "promo", "--reference", "t-9"
        )
        assert result.exit_code == 0, result.output
    assert "already granted" in result.stdout
    assert await account_state(session, user.id) == (30, 0)


async def test_deduct_removes_credits_but_never_below_zero(session: AsyncSession) -> None:
    user = await create_user(session, email="bo@example.com", credits=100)
    ok = await cli("credits", "deduct", "bo@example.com", "40", "--reason", "chargeback")
    assert ok.exit_code == 0, ok.output
    too_much = await cli("credits", "deduct", "bo@example.com", "61", "--reason", "oops")
    assert too_much.exit_code == 1
    assert "Balance 60 cannot cover 61 credits" in too_much.stderr
    assert await account_state(session, user.id) == (60, 0)
    rows = await ledger_rows(session, user.id)
    assert [(r[1], r[3]) for r in rows] == [(100, "signup_bonus"), (-40, "admin_deduct")]


@pytest.mark.parametrize(
    "args",
    [
        ["credits", "grant", "nobody@example.com", "5", "--reason", "x"],
        ["credits", "deduct", "nobody@example.com", "5", "--reason", "x"],
        ["credits", "show", "nobody@example.com"],
    ],
)
async def test_an_unknown_email_fails_cleanly(session: AsyncSession, args: list[str]) -> None:
    result = await cli(*args)
    assert result.exit_code == 1
    assert "no user with email nobody@example.com" in result.stderr


@pytest.mark.parametrize("amount", ["0", "-3", "2.5", "ten"])
async def test_a_bad_amount_is_refused(session: AsyncSession, amount: str) -> None:
    user = await create_user(session, email="cy@example.com", credits=10)
    result = await cli("credits", "grant", "cy@example.com", amount, "--reason", "x")
    assert result.exit_code != 0
    assert await account_state(session, user.id) == (10, 0)


async def test_grant_needs_a_reason(session: AsyncSession) -> None:
    await create_user(session, email="cy@example.com", credits=10)
    result = await cli("credits", "grant", "cy@example.com", "5")
    assert result.exit_code == 2
    assert "--reason" in result.output


async def test_show_prints_balance_debt_and_rows(session: AsyncSession) -> None:
    user = await create_user(session, email="di@example.com", credits=20)
    await credits.take_back_credits(session, user.id, 50, "stripe_refund", "re_1")
    await session.commit()
    result = await cli("credits", "show", "di@example.com")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"di@example.com ({user.id})"
    assert lines[1].startswith("balance 0  debt 30  (on hold")
    assert "-20  debt +30  -> 0  stripe_refund  re_1" in lines[2]
    assert "+20  -> 20  signup_bonus  signup_bonus" in lines[3]


async def test_verify_passes_on_a_consistent_ledger(session: AsyncSession) -> None:
    user = await create_user(session, credits=100)
    await credits.deduct_credits(session, user.id, 10, "summarize")
    await session.commit()
    result = await cli("credits", "verify")
    assert result.exit_code == 0, result.output
    assert "ledger verified" in result.stdout


async def test_verify_fails_and_names_a_corrupted_balance(session: AsyncSession) -> None:
    good = await create_user(session, email="good@example.com", credits=100)
    bad = await create_user(session, email="bad@example.com", credits=100)
    await session.execute(
        update(UserCredits).where(UserCredits.user_id == bad.id).values(balance=105)
    )
    await session.commit()
    result = await cli("credits", "verify")
    assert result.exit_code == 1
    assert f"bad@example.com ({bad.id}): balance_differs_from_ledger" in result.stdout
    assert "balance 105, ledger sums to 100" in result.stdout
    assert "good@example.com" not in result.stdout
    assert "FAILED: 1 problem" in result.stderr
    assert good.id != bad.id


async def test_users_token_grants_the_configured_bonus_once(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNUP_BONUS_CREDITS", "250")
    for _ in range(2):
        result = await cli("users", "token", "new@example.com")
        assert result.exit_code == 0, result.output
    show = await cli("credits", "show", "new@example.com")
    assert "balance 250  debt 0" in show.stdout
    assert show.stdout.count("signup_bonus") == 2  # reason and reference of one row
