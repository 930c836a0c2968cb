"""Payments tests: the app configured for the Stripe stand-in and served on loopback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from accessai.credits import service as credits
from accessai.users.models import User
from tests.factories import auth_headers
from tests.support.loopback_server import serve_on_loopback
from tests.support.stripe_standin import StandinEvent, StripeStandin

WEBHOOK_SECRET = "whsec_test_payments_0123456789"
WEBHOOK_PATH = "/payments/webhook"


def stripe_settings(standin: StripeStandin, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "stripe_secret_key": standin.api_key,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": standin.api_base,
    }
    values.update(overrides)
    return values


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], stripe_standin: StripeStandin) -> Settings:
    return settings_factory(**stripe_settings(stripe_standin))


@pytest.fixture
async def server_url(app: FastAPI, stripe_standin: StripeStandin) -> AsyncIterator[str]:
    """The app on a real loopback port, registered as the stand-in's webhook endpoint."""
    async with serve_on_loopback(app) as url:
        stripe_standin.register_webhook(url + WEBHOOK_PATH, WEBHOOK_SECRET)
        yield url


@pytest.fixture
async def http(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A real HTTP client for the served app."""
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as client:
        yield client


async def start_checkout(
    http: httpx.AsyncClient, settings: Settings, user: User, package: str = "starter"
) -> str:
    """POST /payments/checkout for ``user``; return the Checkout Session id."""
    response = await http.post(
        "/payments/checkout", json={"package": package}, headers=auth_headers(settings, user)
    )
    assert response.status_code == 200, response.text
    session_id: str = response.json()["session_id"]
    return session_id


async def checkout_and_complete(
    standin: StripeStandin,
    http: httpx.AsyncClient,
    settings: Settings,
    user: User,
    package: str = "starter",
    *,
    deliver: bool = True,
) -> tuple[str, StandinEvent]:
    """Check out through the API, then pay on the stand-in: (session id, completed event)."""
    session_id = await start_checkout(http, settings, user, package)
    return session_id, await standin.complete_session(session_id, deliver=deliver)


async def account(app: FastAPI, user_id: uuid.UUID) -> tuple[int, int]:
    """(balance, debt) as committed, read in a fresh session."""
    async with create_sessionmaker(app.state.engine)() as session:
        row = await credits.get_account(session, user_id)
        assert row is not None
        return row.balance, row.debt


async def history(http: httpx.AsyncClient, settings: Settings, user: User) -> dict[str, Any]:
    response = await http.get("/payments/history", headers=auth_headers(settings, user))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def outcome(delivery_body: str) -> str:
    import json

    value: str = json.loads(delivery_body)["outcome"]
    return value
