"""GET /me: the caller's own record, and nobody else's."""

from __future__ import annotations

from typing import Any

import httpx

from accessai.core.config import Settings
from tests.factories import auth_headers, create_user


async def test_me_returns_the_signed_in_users_record(
    client: httpx.AsyncClient, settings: Settings, session: Any
) -> None:
    user = await create_user(session, email="ada@example.com", name="Ada")
    response = await client.get("/me", headers=auth_headers(settings, user))
    assert response.status_code == 200
    assert response.json() == {
        "id": str(user.id),
        "email": "ada@example.com",
        "name": "Ada",
        "created_at": user.created_at.isoformat().replace("+00:00", "Z"),
    }


async def test_each_user_sees_only_their_own_record(
    client: httpx.AsyncClient, settings: Settings, session: Any
) -> None:
    ada = await create_user(session, email="ada@example.com")
    bob = await create_user(session, email="bob@example.com")
    seen_by_ada = (await client.get("/me", headers=auth_headers(settings, ada))).json()
    seen_by_bob = (await client.get("/me", headers=auth_headers(settings, bob))).json()
    assert seen_by_ada["id"] == str(ada.id)
    assert seen_by_bob["id"] == str(bob.id)
    assert "bob@example.com" not in str(seen_by_ada)
    assert "ada@example.com" not in str(seen_by_bob)


async def test_me_requires_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
