"""Only a body Stripe signed, recently, with our secret is acted on; anything else is 400."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.config import Settings
from tests.factories import create_user
from tests.payments.conftest import (
    WEBHOOK_PATH,
    WEBHOOK_SECRET,
    account,
    checkout_and_complete,
    outcome,
)
from tests.support.stripe_standin import StripeStandin, sign_payload


def _headers(signature: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return headers


@pytest.mark.parametrize(
    "forgery",
    ["tampered_body", "wrong_secret", "stale_timestamp", "missing_header", "garbled_header"],
)
async def test_a_forged_delivery_is_400_and_changes_nothing(
    forgery: str,
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

    payload = event.payload
    if forgery == "tampered_body":
        signature: str | None = sign_payload(payload, WEBHOOK_SECRET)
        payload = payload.replace(b'"amount_total": 900', b'"amount_total": 9')
        assert payload != event.payload
    elif forgery == "wrong_secret":
        signature = sign_payload(payload, "whsec_someone_else")
    elif forgery == "stale_timestamp":
        # Stripe's tolerance is five minutes; this one is ten.
        signature = sign_payload(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 600)
    elif forgery == "missing_header":
        signature = None
    else:
        signature = "not-a-signature"

    response = await http.post(WEBHOOK_PATH, content=payload, headers=_headers(signature))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_webhook"
    assert await account(app, user.id) == (0, 0)

    # The event id was not used up: Stripe's genuine delivery still credits.
    [delivery] = await stripe_standin.deliver(event)
    assert (delivery.status, outcome(delivery.body)) == (200, "credited")
    assert await account(app, user.id) == (200, 0)


@pytest.mark.parametrize(
    "body",
    [
        b"this is not json",
        b'{"id": "evt_1", "object": "charge"}',
        b"[]",
        b'{"id": "evt_1", "object": "event", "type": "charge.refunded"}',
        '{"id": "evt_\xe9"}'.encode("latin-1"),
    ],
    ids=["not_json", "not_an_event", "a_list", "no_data", "not_utf8"],
)
async def test_a_signed_body_that_is_not_a_stripe_event_is_400(
    body: bytes, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        WEBHOOK_PATH, content=body, headers=_headers(sign_payload(body, WEBHOOK_SECRET))
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_webhook"


async def test_a_valid_signature_among_several_is_accepted(
    app: FastAPI,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    # During secret rotation Stripe sends one v1 signature per active secret.
    user = await create_user(session, credits=0)
    _session_id, event = await checkout_and_complete(
        stripe_standin, http, settings, user, deliver=False
    )
    good = sign_payload(event.payload, WEBHOOK_SECRET)
    other = sign_payload(event.payload, "whsec_old_secret")
    timestamp, good_v1 = good.split(",")
    header = f"{timestamp},{other.split(',')[1]},{good_v1}"
    response = await http.post(WEBHOOK_PATH, content=event.payload, headers=_headers(header))
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "credited"}
    assert await account(app, user.id) == (200, 0)
