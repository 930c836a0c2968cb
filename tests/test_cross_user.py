"""No data leaks across users: every user-scoped route is probed by a second user.

Alice gets distinctive data (a granted reference, an API key, a payment);
Bob then calls each route. A read must show none of Alice's identifiers; a
write or delete aimed at Alice's resources must fail like a missing one and
leave her view unchanged. ``test_every_user_route_has_a_probe`` fails when a
route needing ``CurrentUser`` has no probe here: a new route adds one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from accessai.core.config import Settings
from accessai.credits import service as credits
from tests.chat.conftest import MODEL as CHAT_MODEL
from tests.chat.conftest import chat_settings
from tests.factories import auth_headers, create_user
from tests.payments.conftest import stripe_settings
from tests.support.openai_upstream import OpenAIUpstream
from tests.support.routes import app_routes, requires_user
from tests.support.stripe_standin import StripeStandin

ALICE_REFERENCE = "alice-grant-0042"
ALICE_KEY_NAME = "alice-laptop-key"
# Alice's AI call has a length nobody else uses, so her usage row is recognisable.
ALICE_TEXT = ("Alice writes a long and careful note. " * 60)[:1987]
TEXT = "A short text that is long enough to be summarized by the engine."


@dataclass
class World:
    client: httpx.AsyncClient
    alice: dict[str, str]
    bob: dict[str, str]
    alice_key_id: str
    alice_key: str
    alice_secrets: list[str]


Probe = Callable[[World, str, str], Awaitable[None]]
PROBES: dict[tuple[str, str], Probe] = {}


def probe(*routes: tuple[str, str]) -> Callable[[Probe], Probe]:
    def register(function: Probe) -> Probe:
        for route in routes:
            assert route not in PROBES, f"two probes for {route}"
            PROBES[route] = function
        return function

    return register


async def alice_view(world: World) -> dict[str, Any]:
    """Everything Alice can read about herself."""
    view = {}
    for path in ("/me", "/credits/balance", "/credits/transactions", "/api-keys", "/usage"):
        response = await world.client.get(path, headers=world.alice)
        assert response.status_code == 200, (path, response.text)
        view[path] = response.json()
    history = await world.client.get("/payments/history", headers=world.alice)
    view["/payments/history"] = history.json()
    return view


@probe(
    ("GET", "/me"),
    ("GET", "/credits/balance"),
    ("GET", "/credits/transactions"),
    ("GET", "/api-keys"),
    ("GET", "/payments/history"),
    ("GET", "/usage"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
)
async def bob_reads_only_his_own(world: World, method: str, path: str) -> None:
    response = await world.client.request(
        method, path.format(model_id=CHAT_MODEL), headers=world.bob
    )
    assert response.status_code == 200, response.text
    for secret in world.alice_secrets:
        assert secret not in response.text, f"{path} shows Bob {secret!r}"


@probe(("DELETE", "/api-keys/{key_id}"))
async def bob_cannot_revoke_alices_key(world: World, method: str, path: str) -> None:
    before = await alice_view(world)
    response = await world.client.request(
        method, path.format(key_id=world.alice_key_id), headers=world.bob
    )
    # Exactly what a key id that does not exist gets: no hint that it belongs to someone.
    missing = await world.client.request(
        method, path.format(key_id="00000000-0000-4000-8000-000000000000"), headers=world.bob
    )
    assert response.status_code == 404
    assert response.json() == missing.json()
    assert await alice_view(world) == before
    still_works = await world.client.get(
        "/me", headers={"Authorization": f"Bearer {world.alice_key}"}
    )
    assert still_works.status_code == 200


@probe(
    ("POST", "/api-keys"),
    ("POST", "/payments/checkout"),
    ("POST", "/api/summarize"),
    ("POST", "/api/analyze"),
    ("POST", "/v1/chat/completions"),
)
async def bob_creating_changes_only_his_account(world: World, method: str, path: str) -> None:
    """Bob's own writes (keys, purchases, paid AI calls) touch nothing of Alice's."""
    bodies = {
        "/api-keys": {"name": "bob-key"},
        "/payments/checkout": {"package": "starter"},
        "/api/summarize": {"text": TEXT},
        "/api/analyze": {"text": TEXT},
        "/v1/chat/completions": {
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": TEXT}],
        },
    }
    before = await alice_view(world)
    response = await world.client.request(method, path, headers=world.bob, json=bodies[path])
    assert response.status_code in (200, 201), response.text
    for secret in world.alice_secrets:
        assert secret not in response.text
    assert await alice_view(world) == before


@pytest.fixture
def settings(
    settings_factory: Callable[..., Settings],
    stripe_standin: StripeStandin,
    openai_upstream: OpenAIUpstream,
) -> Settings:
    return chat_settings(
        settings_factory,
        openai_upstream.base_url,
        **stripe_settings(stripe_standin),
        rate_limit_enabled=False,
    )


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient, session, settings: Settings) -> World:
    alice_user = await create_user(session, email="alice-cross@example.com", credits=100)
    bob_user = await create_user(session, email="bob-cross@example.com", credits=1000)
    await credits.add_credits(session, alice_user.id, 7, "admin_grant", reference=ALICE_REFERENCE)
    await session.commit()
    alice = auth_headers(settings, alice_user)
    key = await client.post("/api-keys", headers=alice, json={"name": ALICE_KEY_NAME})
    assert key.status_code == 201, key.text
    checkout = await client.post("/payments/checkout", headers=alice, json={"package": "pro"})
    assert checkout.status_code == 200, checkout.text
    summary = await client.post("/api/summarize", headers=alice, json={"text": ALICE_TEXT})
    assert summary.status_code == 200, summary.text
    return World(
        client=client,
        alice=alice,
        bob=auth_headers(settings, bob_user),
        alice_key_id=key.json()["id"],
        alice_key=key.json()["key"],
        alice_secrets=[
            str(alice_user.id),
            alice_user.email,
            ALICE_REFERENCE,
            ALICE_KEY_NAME,
            key.json()["id"],
            key.json()["prefix"],
            checkout.json()["session_id"],
            f'"input_chars":{len(ALICE_TEXT)}',
        ],
    )


def test_every_user_route_has_a_probe(app: FastAPI) -> None:
    user_routes = {route.key for route in app_routes(app) if requires_user(route)}
    assert user_routes - set(PROBES) == set(), "add a cross-user probe for these routes"
    assert set(PROBES) - user_routes == set(), "probes for routes that are gone"


@pytest.mark.parametrize("route", sorted(PROBES), ids=lambda route: f"{route[0]} {route[1]}")
async def test_bob_cannot_reach_alices_data(world: World, route: tuple[str, str]) -> None:
    method, path = route
    await PROBES[route](world, method, path)
