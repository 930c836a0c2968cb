"""Packages and Checkout: the official stripe SDK, pointed at the stand-in."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.config import Settings
from tests.factories import auth_headers, create_user
from tests.payments.conftest import history, stripe_settings
from tests.support.stripe_standin import StripeStandin


async def test_packages_are_public(client: httpx.AsyncClient) -> None:
    response = await client.get("/payments/packages")
    assert response.status_code == 200
    assert response.json() == {
        "packages": [
            {
                "id": "starter",
                "name": "Starter",
                "credits": 200,
                "price_cents": 900,
                "currency": "usd",
            },
            {"id": "pro", "name": "Pro", "credits": 500, "price_cents": 1900, "currency": "usd"},
        ]
    }


async def test_checkout_creates_a_stripe_session_and_a_pending_payment(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
) -> None:
    user = await create_user(session, email="buyer@example.com")
    response = await client.post(
        "/payments/checkout", json={"package": "pro"}, headers=auth_headers(settings, user)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"checkout_url", "session_id"}
    assert body["session_id"].startswith("cs_test_")

    # What Stripe received, read back through the SDK.
    stripe_session = stripe_standin.stripe_client().v1.checkout.sessions.retrieve(
        body["session_id"]
    )
    assert stripe_session.url == body["checkout_url"]
    assert stripe_session.mode == "payment"
    assert stripe_session.amount_total == 1900
    assert stripe_session.currency == "usd"
    assert stripe_session.client_reference_id == str(user.id)
    assert stripe_session.customer_email == "buyer@example.com"
    assert stripe_session.metadata is not None
    assert stripe_session.metadata["user_id"] == str(user.id)
    assert stripe_session.metadata["package"] == "pro"
    assert stripe_session.success_url == (
        "http://testserver/?checkout=success&session_id={CHECKOUT_SESSION_ID}"
    )
    assert stripe_session.cancel_url == "http://testserver/?checkout=cancelled"
    items = stripe_standin.stripe_client().v1.checkout.sessions.line_items.list(body["session_id"])
    assert [(item.quantity, item.amount_total) for item in items.data] == [(1, 1900)]

    [payment] = (await history(client, settings, user))["payments"]
    assert payment["package"] == "pro"
    assert payment["credits"] == 500
    assert payment["amount_cents"] == 1900
    assert payment["currency"] == "usd"
    assert payment["status"] == "pending"
    assert payment["paid_at"] is None
    # The payment id is the metadata Stripe will carry back.
    assert stripe_session.metadata["payment_id"] == payment["id"]


async def test_checkout_urls_come_from_settings(
    settings_factory: Callable[..., Settings],
    stripe_standin: StripeStandin,
    session: AsyncSession,
) -> None:
    from asgi_lifespan import LifespanManager

    from accessai.main import create_app

    settings = settings_factory(
        **stripe_settings(
            stripe_standin,
            checkout_success_url="https://shop.example/thanks?s={CHECKOUT_SESSION_ID}",
            checkout_cancel_url="https://shop.example/cancelled",
            stripe_currency="EUR",
        )
    )
    user = await create_user(session)
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.post(
            "/payments/checkout", json={"package": "starter"}, headers=auth_headers(settings, user)
        )
    assert response.status_code == 200, response.text
    created = stripe_standin.stripe_client().v1.checkout.sessions.retrieve(
        response.json()["session_id"]
    )
    assert created.success_url == "https://shop.example/thanks?s={CHECKOUT_SESSION_ID}"
    assert created.cancel_url == "https://shop.example/cancelled"
    assert created.currency == "eur"


async def test_unknown_package_is_422(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await create_user(session)
    response = await client.post(
        "/payments/checkout", json={"package": "platinum"}, headers=auth_headers(settings, user)
    )
    assert response.status_code == 422
    assert response.json()["error"] == "unknown_package"
    assert response.json()["packages"] == ["pro", "starter"]
    assert (await history(client, settings, user))["payments"] == []


async def test_checkout_needs_a_user(client: httpx.AsyncClient) -> None:
    response = await client.post("/payments/checkout", json={"package": "starter"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("configured", "missing"),
    [
        ({}, ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"]),
        ({"stripe_secret_key": "sk_test_x"}, ["STRIPE_WEBHOOK_SECRET"]),
    ],
)
async def test_unconfigured_payments_answer_503_naming_the_variables(
    settings_factory: Callable[..., Settings],
    session: AsyncSession,
    configured: dict[str, str],
    missing: list[str],
) -> None:
    from asgi_lifespan import LifespanManager

    from accessai.main import create_app

    settings = settings_factory(**configured)
    user = await create_user(session)
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        assert (app.state.stripe_client is None) == ("stripe_secret_key" not in configured)
        checkout = await client.post(
            "/payments/checkout", json={"package": "starter"}, headers=auth_headers(settings, user)
        )
        webhook = await client.post("/payments/webhook", content=b"{}")
        packages = await client.get("/payments/packages")
    for response in (checkout, webhook):
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "payments_not_configured"
        assert "STRIPE_SECRET_KEY" in body["message"]
        assert "STRIPE_WEBHOOK_SECRET" in body["message"]
        assert body["missing"] == missing
    assert packages.status_code == 200


async def test_a_stripe_error_is_502_without_stripe_details(
    settings_factory: Callable[..., Settings],
    stripe_standin: StripeStandin,
    session: AsyncSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from asgi_lifespan import LifespanManager

    from accessai.main import create_app

    # A revoked or mistyped key: Stripe answers 401 with its own explanation.
    settings = settings_factory(**stripe_settings(stripe_standin, stripe_secret_key="rk_revoked"))
    user = await create_user(session)
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        capsys.readouterr()
        response = await client.post(
            "/payments/checkout", json={"package": "starter"}, headers=auth_headers(settings, user)
        )
        payments = (await history(client, settings, user))["payments"]
    assert response.status_code == 502
    assert response.json() == {
        "error": "payment_provider_error",
        "message": "The payment provider could not start checkout. Try again shortly.",
    }
    assert "key" not in response.text.lower()
    assert "AuthenticationError" in capsys.readouterr().out  # ...but the log says what happened
    assert [p["status"] for p in payments] == ["failed"]


async def test_stripe_unreachable_is_502(
    settings_factory: Callable[..., Settings],
    stripe_standin: StripeStandin,
    session: AsyncSession,
) -> None:
    import socket

    from asgi_lifespan import LifespanManager

    from accessai.main import create_app

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead_base = f"http://127.0.0.1:{closed.getsockname()[1]}"
    settings = settings_factory(**stripe_settings(stripe_standin, stripe_api_base=dead_base))
    user = await create_user(session)
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.post(
            "/payments/checkout", json={"package": "starter"}, headers=auth_headers(settings, user)
        )
    assert response.status_code == 502
    assert response.json()["error"] == "payment_provider_error"


async def test_history_shows_only_the_callers_payments(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    alice = await create_user(session)
    bob = await create_user(session)
    for _ in range(12):
        response = await client.post(
            "/payments/checkout", json={"package": "starter"}, headers=auth_headers(settings, alice)
        )
        assert response.status_code == 200
    assert len((await history(client, settings, alice))["payments"]) == 10
    assert (await history(client, settings, bob)) == {"payments": [], "ledger": []}


def test_the_currency_setting_is_a_three_letter_code() -> None:
    from pydantic import ValidationError

    from tests.support.settings import make_settings

    assert make_settings(stripe_currency="EUR").stripe_currency == "EUR"
    with pytest.raises(ValidationError, match="stripe_currency"):
        make_settings(stripe_currency="usdollars")
