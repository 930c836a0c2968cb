"""Payments feed the business metrics: webhook events by type and outcome, credits bought."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.config import Settings
from tests.factories import create_user
from tests.payments.conftest import WEBHOOK_PATH, start_checkout
from tests.support.stripe_standin import StripeStandin


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


COMPLETED = {"type": "checkout.session.completed"}


async def test_a_purchase_and_its_redelivery_are_counted(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    credited = sample("accessai_webhook_events_total", **COMPLETED, outcome="credited")
    duplicate = sample("accessai_webhook_events_total", **COMPLETED, outcome="duplicate")
    bought = sample("accessai_credits_purchased_total", package="pro")
    purchases = sample("accessai_credit_purchases_total", package="pro")

    user = await create_user(session, credits=0)
    session_id = await start_checkout(http, settings, user, "pro")
    event = await stripe_standin.complete_session(session_id)
    await stripe_standin.deliver(event, times=1)

    assert sample("accessai_webhook_events_total", **COMPLETED, outcome="credited") == credited + 1
    assert (
        sample("accessai_webhook_events_total", **COMPLETED, outcome="duplicate") == duplicate + 1
    )
    assert sample("accessai_credits_purchased_total", package="pro") == bought + 500
    assert sample("accessai_credit_purchases_total", package="pro") == purchases + 1
    text = (await http.get("/metrics")).text
    assert 'accessai_credits_purchased_total{package="pro"}' in text


async def test_an_unsigned_event_is_counted_without_trusting_its_type(
    http: httpx.AsyncClient,
) -> None:
    labels = {"type": "unverified", "outcome": "invalid_signature"}
    before = sample("accessai_webhook_events_total", **labels)
    response = await http.post(
        WEBHOOK_PATH,
        content=b'{"id": "evt_forged", "type": "checkout.session.completed"}',
        headers={"Stripe-Signature": "t=1,v1=00", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert sample("accessai_webhook_events_total", **labels) == before + 1
    assert (
        sample(
            "accessai_webhook_events_total",
            type="checkout.session.completed",
            outcome="invalid_signature",
        )
        == 0
    )
