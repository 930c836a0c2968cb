"""The product demo, end to end over real HTTP: pay for starter, get exactly 200 credits.

The test never writes to the database itself: the user comes from the
`accessai users token` command, checkout goes through the API, Stripe (the
stand-in) delivers the signed webhook to the app served by uvicorn on a
loopback port, and the balance is read through the credit service.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from typer.testing import CliRunner

from accessai.cli import app as cli
from accessai.core.config import Settings
from accessai.core.db import create_engine, create_sessionmaker
from accessai.core.security import decode_access_token
from accessai.credits import service as credits
from accessai.main import create_app
from tests.payments.conftest import WEBHOOK_PATH, WEBHOOK_SECRET, stripe_settings
from tests.support.loopback_server import serve_on_loopback
from tests.support.stripe_standin import StripeStandin, sign_payload


async def _balance(settings: Settings, user_id: uuid.UUID) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await credits.get_balance(session, user_id)
    finally:
        await engine.dispose()


async def test_paying_for_starter_adds_exactly_200_credits(
    settings_factory: Callable[..., Settings],
    stripe_standin: StripeStandin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_factory(**stripe_settings(stripe_standin))

    # A user, the way an operator makes one on a fresh install.
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JWT_SECRET", settings.jwt_secret.get_secret_value())
    monkeypatch.setenv("ENVIRONMENT", "test")
    made = await asyncio.to_thread(CliRunner().invoke, cli, ["users", "token", "demo@example.com"])
    assert made.exit_code == 0, made.output
    token = [line for line in made.stdout.splitlines() if not line.startswith("{")][-1]
    user_id = uuid.UUID(decode_access_token(settings, token)["sub"])
    headers = {"Authorization": f"Bearer {token}"}

    async with (
        serve_on_loopback(create_app(settings), lifespan="on") as url,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http,
    ):
        stripe_standin.register_webhook(url + WEBHOOK_PATH, WEBHOOK_SECRET)
        before = await _balance(settings, user_id)

        checkout = await http.post("/payments/checkout", json={"package": "starter"})
        assert checkout.status_code == 200, checkout.text
        assert checkout.json()["checkout_url"].startswith(stripe_standin.api_base)

        # The customer pays; Stripe tells the backend over HTTP, signed.
        paid = await stripe_standin.complete_session(checkout.json()["session_id"])
        assert [d.status for d in paid.deliveries] == [200]
        assert await _balance(settings, user_id) == before + 200

        # Stripe delivers the same event again: nothing changes.
        replayed = await stripe_standin.deliver(paid)
        assert [d.status for d in replayed] == [200]
        assert await _balance(settings, user_id) == before + 200

        # Someone posts a look-alike event without Stripe's secret.
        forged = json.loads(paid.payload)
        forged["id"] = "evt_forged"
        body = json.dumps(forged).encode()
        response = await http.post(
            WEBHOOK_PATH,
            content=body,
            headers={"Stripe-Signature": sign_payload(body, "whsec_guessed")},
        )
        assert response.status_code == 400
        assert await _balance(settings, user_id) == before + 200

        history = (await http.get("/payments/history")).json()
        assert [(p["package"], p["status"]) for p in history["payments"]] == [("starter", "paid")]
