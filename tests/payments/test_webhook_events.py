"""What each Stripe event does, exactly once, delivered over real HTTP by the stand-in."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.config import Settings
from tests.factories import create_user
from tests.payments.conftest import account, checkout_and_complete, history, outcome, start_checkout
from tests.support.stripe_standin import StripeStandin


def _log_events(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


async def test_a_paid_session_credits_its_package_once(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=100)
    session_id, event = await checkout_and_complete(stripe_standin, http, settings, user, "pro")
    assert [(d.status, outcome(d.body)) for d in event.deliveries] == [(200, "credited")]
    assert await account(app, user.id) == (600, 0)

    body = await history(http, settings, user)
    [payment] = body["payments"]
    assert (payment["status"], payment["credits"]) == ("paid", 500)
    assert payment["paid_at"] is not None
    assert [(row["amount"], row["reason"], row["reference"]) for row in body["ledger"]] == [
        (500, "stripe_payment", session_id)
    ]


async def test_redelivered_events_do_nothing_the_second_time(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    _session_id, event = await checkout_and_complete(stripe_standin, http, settings, user)
    again = await stripe_standin.deliver(event, times=3)
    assert [(d.status, outcome(d.body)) for d in again] == [(200, "duplicate")] * 3
    assert await account(app, user.id) == (200, 0)


async def test_twenty_concurrent_deliveries_of_one_event_credit_once(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    _session_id, event = await checkout_and_complete(
        stripe_standin, http, settings, user, deliver=False
    )
    deliveries = await stripe_standin.deliver(event, times=20, concurrently=True)
    assert [d.status for d in deliveries] == [200] * 20
    outcomes = sorted(outcome(d.body) for d in deliveries)
    assert outcomes == ["credited"] + ["duplicate"] * 19
    assert await account(app, user.id) == (200, 0)
    ledger = (await history(http, settings, user))["ledger"]
    assert [row["amount"] for row in ledger] == [200]


async def test_completed_then_async_payment_succeeded_credits_once(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    _session_id, completed = await checkout_and_complete(stripe_standin, http, settings, user)
    assert outcome(completed.deliveries[0].body) == "credited"
    # A second, different event about the same paid session.
    succeeded = await stripe_standin.send_event(
        "checkout.session.async_payment_succeeded", completed.object
    )
    assert succeeded.id != completed.id
    assert [(d.status, outcome(d.body)) for d in succeeded.deliveries] == [
        (200, "already_credited")
    ]
    assert await account(app, user.id) == (200, 0)


async def test_an_async_payment_is_processing_until_it_succeeds(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    session_id = await start_checkout(http, settings, user)
    submitted = await stripe_standin.complete_session(session_id, async_payment=True)
    assert outcome(submitted.deliveries[0].body) == "processing"
    assert (await history(http, settings, user))["payments"][0]["status"] == "processing"
    assert await account(app, user.id) == (0, 0)

    settled = await stripe_standin.async_payment_succeeded(session_id)
    assert outcome(settled.deliveries[0].body) == "credited"
    assert await account(app, user.id) == (200, 0)
    # ...and the paid completion arriving late (or again) changes nothing.
    late = await stripe_standin.send_event("checkout.session.completed", settled.object)
    assert outcome(late.deliveries[0].body) == "already_credited"
    assert await account(app, user.id) == (200, 0)


@pytest.mark.parametrize("ending", ["async_payment_failed", "expired"])
async def test_failed_and_expired_sessions_add_nothing(
    ending: str,
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    session_id = await start_checkout(http, settings, user)
    if ending == "expired":
        event = await stripe_standin.expire_session(session_id)
        expected = ("expired", "expired")
    else:
        await stripe_standin.complete_session(session_id, async_payment=True)
        event = await stripe_standin.async_payment_failed(session_id)
        expected = ("payment_failed", "failed")
    assert outcome(event.deliveries[0].body) == expected[0]
    assert (await history(http, settings, user))["payments"][0]["status"] == expected[1]
    assert await account(app, user.id) == (0, 0)


async def test_an_amount_mismatch_is_reported_and_not_credited(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = await create_user(session, credits=0)
    _session_id, genuine = await checkout_and_complete(
        stripe_standin, http, settings, user, "pro", deliver=False
    )
    cheaper = {**genuine.object, "amount_total": 900, "amount_subtotal": 900}
    capsys.readouterr()
    event = await stripe_standin.send_event("checkout.session.completed", cheaper)
    assert [(d.status, outcome(d.body)) for d in event.deliveries] == [(200, "amount_mismatch")]
    assert await account(app, user.id) == (0, 0)
    assert (await history(http, settings, user))["payments"][0]["status"] == "needs_review"

    [report] = [
        e for e in _log_events(capsys.readouterr().out) if e["event"] == "payments.amount_mismatch"
    ]
    assert report["level"] == "error"
    assert (report["expected_amount"], report["reported_amount"]) == (1900, 900)
    # The review status holds: the genuine event for that session does not credit either.
    [delivery] = await stripe_standin.deliver(genuine)
    assert outcome(delivery.body) == "stale"
    assert await account(app, user.id) == (0, 0)


async def test_a_currency_mismatch_is_not_credited(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, credits=0)
    _session_id, genuine = await checkout_and_complete(
        stripe_standin, http, settings, user, deliver=False
    )
    event = await stripe_standin.send_event(
        "checkout.session.completed", {**genuine.object, "currency": "jpy"}
    )
    assert outcome(event.deliveries[0].body) == "amount_mismatch"
    assert await account(app, user.id) == (0, 0)


async def test_an_unknown_session_is_reported_and_not_credited(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = await create_user(session, credits=0)
    _session_id, genuine = await checkout_and_complete(
        stripe_standin, http, settings, user, deliver=False
    )
    # Metadata naming our user and package is not enough: the session id must be ours.
    stranger = {**genuine.object, "id": "cs_test_not_ours"}
    capsys.readouterr()
    event = await stripe_standin.send_event("checkout.session.completed", stranger)
    assert [(d.status, outcome(d.body)) for d in event.deliveries] == [(200, "unknown_session")]
    [report] = [
        e for e in _log_events(capsys.readouterr().out) if e["event"] == "payments.unknown_session"
    ]
    assert report["level"] == "error"
    assert report["client_reference_id"] == str(user.id)
    assert await account(app, user.id) == (0, 0)


async def test_unhandled_event_types_are_acknowledged_and_ignored(
    http: httpx.AsyncClient, stripe_standin: StripeStandin
) -> None:
    event = await stripe_standin.send_event(
        "customer.created", {"id": "cus_123", "object": "customer"}
    )
    assert [(d.status, outcome(d.body)) for d in event.deliveries] == [(200, "ignored")]
    again = await stripe_standin.deliver(event)
    assert outcome(again[0].body) == "duplicate"


async def test_a_signed_event_of_an_unexpected_shape_is_refused_for_a_retry(
    http: httpx.AsyncClient, stripe_standin: StripeStandin
) -> None:
    # Say Stripe changed the object in a new API version: 400, no inbox row,
    # so Stripe keeps retrying until the parsing is fixed.
    event = await stripe_standin.send_event("charge.refunded", {"id": "ch_1", "object": "charge"})
    assert [d.status for d in event.deliveries] == [400]
    assert json.loads(event.deliveries[0].body)["error"] == "invalid_webhook"
    again = await stripe_standin.deliver(event)
    assert [d.status for d in again] == [400]
