"""Refunds and disputes take the purchased credits back; what is already spent becomes debt."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from accessai.credits import service as credits
from tests.factories import create_user
from tests.payments.conftest import account, checkout_and_complete, history, outcome
from tests.support.stripe_standin import StripeStandin


async def _buy(
    http: httpx.AsyncClient,
    settings: Settings,
    standin: StripeStandin,
    user,
    package: str = "starter",
) -> str:
    session_id, event = await checkout_and_complete(standin, http, settings, user, package)
    assert outcome(event.deliveries[0].body) == "credited"
    return session_id


async def _spend(app: FastAPI, user_id, amount: int) -> None:
    async with create_sessionmaker(app.state.engine)() as session, session.begin():
        await credits.deduct_credits(session, user_id, amount, "summarize")


async def test_a_full_refund_takes_the_package_back(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=100)
    session_id = await _buy(http, settings, stripe_standin, user)
    assert await account(app, user.id) == (300, 0)

    event = await stripe_standin.refund(session_id)
    assert [(d.status, outcome(d.body)) for d in event.deliveries] == [(200, "reversed")]
    assert await account(app, user.id) == (100, 0)
    body = await history(http, settings, user)
    [payment] = body["payments"]
    assert (payment["status"], payment["refunded_cents"], payment["credits_reversed"]) == (
        "refunded",
        900,
        200,
    )
    assert [(row["amount"], row["reason"]) for row in body["ledger"]] == [
        (-200, "stripe_refund"),
        (200, "stripe_payment"),
    ]
    # Redelivered: nothing more is taken.
    [again] = await stripe_standin.deliver(event)
    assert outcome(again.body) == "duplicate"
    assert await account(app, user.id) == (100, 0)


async def test_partial_refunds_take_back_proportionally_rounded_down(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    session_id = await _buy(http, settings, stripe_standin, user)  # 200 credits for 900 cents

    # 100 cents buys 22.2 credits: 22 are taken (the customer keeps the fraction).
    first = await stripe_standin.refund(session_id, amount=100)
    assert outcome(first.deliveries[0].body) == "reversed"
    assert await account(app, user.id) == (178, 0)
    # 2 more cents: cumulative 102 cents = 22.67 credits, still 22: nothing more.
    second = await stripe_standin.refund(session_id, amount=2)
    assert outcome(second.deliveries[0].body) == "recorded"
    assert await account(app, user.id) == (178, 0)
    # The rest: the whole package is back, fractions included.
    rest = await stripe_standin.refund(session_id)
    assert outcome(rest.deliveries[0].body) == "reversed"
    assert await account(app, user.id) == (0, 0)
    [payment] = (await history(http, settings, user))["payments"]
    assert (payment["status"], payment["credits_reversed"]) == ("refunded", 200)


async def test_a_refund_after_spending_becomes_debt_that_blocks_spending_until_repaid(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    session_id = await _buy(http, settings, stripe_standin, user)
    await _spend(app, user.id, 150)
    assert await account(app, user.id) == (50, 0)

    event = await stripe_standin.refund(session_id)
    assert outcome(event.deliveries[0].body) == "reversed"
    # 50 taken from the balance, the other 150 owed: the balance never goes below zero.
    assert await account(app, user.id) == (0, 150)

    with pytest.raises(credits.AccountOnHoldError) as held:
        await _spend(app, user.id, 1)
    assert held.value.status_code == 402
    assert held.value.body()["error"] == "account_on_hold"
    assert held.value.body()["debt"] == 150

    # A new purchase repays the debt first, then the rest is spendable.
    await _buy(http, settings, stripe_standin, user, "pro")
    assert await account(app, user.id) == (350, 0)
    await _spend(app, user.id, 10)
    assert await account(app, user.id) == (340, 0)
    reasons = [row["reason"] for row in (await history(http, settings, user))["ledger"]]
    assert reasons == [
        "debt_recovery",
        "stripe_payment",
        "stripe_refund",
        "stripe_payment",
    ]


async def test_a_dispute_takes_the_credits_back_with_its_own_reason(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    session_id = await _buy(http, settings, stripe_standin, user)
    await _spend(app, user.id, 120)

    event = await stripe_standin.dispute(session_id)
    assert [(d.status, outcome(d.body)) for d in event.deliveries] == [(200, "reversed")]
    assert await account(app, user.id) == (0, 120)
    body = await history(http, settings, user)
    assert body["payments"][0]["status"] == "disputed"
    newest = body["ledger"][0]
    assert (newest["amount"], newest["reason"]) == (-80, "stripe_dispute")


async def test_a_refund_then_a_dispute_never_take_more_than_the_package(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=1000)
    session_id = await _buy(http, settings, stripe_standin, user)
    await stripe_standin.refund(session_id, amount=450)
    assert await account(app, user.id) == (1100, 0)
    await stripe_standin.dispute(session_id)  # disputes the whole 900 cents
    assert await account(app, user.id) == (1000, 0)


async def test_a_refund_for_a_payment_that_is_not_ours_is_ignored(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    session_id = await _buy(http, settings, stripe_standin, user)
    refund = await stripe_standin.refund(session_id, deliver=False)
    foreign = {**refund.object, "payment_intent": "pi_elsewhere", "metadata": {}}
    event = await stripe_standin.send_event("charge.refunded", foreign)
    assert [(d.status, outcome(d.body)) for d in event.deliveries] == [(200, "unknown_payment")]
    assert await account(app, user.id) == (200, 0)


async def test_a_refund_reported_before_the_payment_is_applied_when_it_is_credited(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    # Stripe does not promise order: the refund may arrive first. It is found
    # through the charge's metadata, recorded, and taken when the credit lands.
    user = await create_user(session, credits=0)
    session_id, completed = await checkout_and_complete(
        stripe_standin, http, settings, user, deliver=False
    )
    refund = await stripe_standin.refund(session_id, amount=450)
    assert outcome(refund.deliveries[0].body) == "recorded"
    assert await account(app, user.id) == (0, 0)

    [delivery] = await stripe_standin.deliver(completed)
    assert outcome(delivery.body) == "credited"
    assert await account(app, user.id) == (100, 0)
    [payment] = (await history(http, settings, user))["payments"]
    assert (payment["status"], payment["credits_reversed"]) == ("partially_refunded", 100)
