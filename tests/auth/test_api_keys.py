"""Personal API keys: shown once, stored hashed, accepted like a token, private to their owner."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from accessai.auth import api_keys
from accessai.auth.models import ApiKey
from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker, utcnow
from accessai.users.models import User
from tests.factories import auth_headers, create_user

UNAUTHORIZED_BODY = {"error": "unauthorized", "message": "Missing or invalid credentials."}


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def new_key(client: httpx.AsyncClient, headers: dict[str, str], name: str = "ci") -> Any:
    response = await client.post("/api-keys", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def stored_keys(db: Any) -> list[ApiKey]:
    async with create_sessionmaker(db.engine)() as session:
        return list(await session.scalars(select(ApiKey)))


async def test_a_key_is_shown_once_and_only_its_hash_is_stored(
    client: httpx.AsyncClient, settings: Settings, session: Any, db: Any
) -> None:
    user = await create_user(session)
    response = await client.post(
        "/api-keys", json={"name": "  laptop script  "}, headers=auth_headers(settings, user)
    )
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"id", "name", "prefix", "created_at", "last_used_at", "key"}
    key = body["key"]
    assert key.startswith("aai_")
    assert len(key) >= 4 + 43  # 32 random bytes, base64url
    assert body["name"] == "laptop script"
    assert body["prefix"] == key[:12]
    assert body["last_used_at"] is None

    [row] = await stored_keys(db)
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    for value in (row.name, row.prefix, row.key_hash):
        assert key not in value

    listed = (await client.get("/api-keys", headers=auth_headers(settings, user))).json()
    assert listed == [{k: v for k, v in body.items() if k != "key"}]


async def test_keys_are_random(client: httpx.AsyncClient, settings: Settings, session: Any) -> None:
    user = await create_user(session)
    headers = auth_headers(settings, user)
    keys = {(await new_key(client, headers, f"k{i}"))["key"] for i in range(5)}
    assert len(keys) == 5


async def test_a_key_is_accepted_wherever_a_token_is(
    client: httpx.AsyncClient, settings: Settings, session: Any
) -> None:
    user = await create_user(session, email="ada@example.com")
    key = (await new_key(client, auth_headers(settings, user)))["key"]

    me = await client.get("/me", headers=bearer(key))
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"
    # Key management itself accepts a key, as every protected route does.
    assert (await client.get("/api-keys", headers=bearer(key))).status_code == 200
    listed = (await client.get("/api-keys", headers=bearer(key))).json()
    assert listed[0]["last_used_at"] is not None


async def test_a_revoked_key_stops_working_at_once(
    client: httpx.AsyncClient, settings: Settings, session: Any, db: Any
) -> None:
    user = await create_user(session)
    headers = auth_headers(settings, user)
    created = await new_key(client, headers)
    assert (await client.get("/me", headers=bearer(created["key"]))).status_code == 200

    revoked = await client.delete(f"/api-keys/{created['id']}", headers=headers)
    assert revoked.status_code == 204
    assert revoked.content == b""
    refused = await client.get("/me", headers=bearer(created["key"]))
    assert refused.status_code == 401
    assert refused.json() == UNAUTHORIZED_BODY
    assert (await client.get("/api-keys", headers=headers)).json() == []
    assert await stored_keys(db) == []
    again = await client.delete(f"/api-keys/{created['id']}", headers=headers)
    assert again.status_code == 404


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param("aai_" + "A" * 43, id="unknown"),
        pytest.param("aai_", id="prefix-only"),
        pytest.param("aai_" + "x" * 500, id="oversized"),
    ],
)
async def test_an_unknown_key_is_refused_like_a_bad_token(
    client: httpx.AsyncClient, credential: str
) -> None:
    response = await client.get("/me", headers=bearer(credential))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == UNAUTHORIZED_BODY


async def test_a_deleted_users_keys_stop_working(
    client: httpx.AsyncClient, settings: Settings, session: Any, db: Any
) -> None:
    user = await create_user(session)
    key = (await new_key(client, auth_headers(settings, user)))["key"]
    await session.execute(delete(User).where(User.id == user.id))
    await session.commit()
    assert (await client.get("/me", headers=bearer(key))).status_code == 401
    assert await stored_keys(db) == []  # removed with their owner


async def test_two_users_cannot_see_or_revoke_each_others_keys(
    client: httpx.AsyncClient, settings: Settings, session: Any, db: Any
) -> None:
    ada = await create_user(session, email="ada@example.com")
    bob = await create_user(session, email="bob@example.com")
    ada_key = await new_key(client, auth_headers(settings, ada), "ada's")
    bob_key = await new_key(client, auth_headers(settings, bob), "bob's")

    for credentials in (auth_headers(settings, bob), bearer(bob_key["key"])):
        listed = (await client.get("/api-keys", headers=credentials)).json()
        assert [k["id"] for k in listed] == [bob_key["id"]]
        refused = await client.delete(f"/api-keys/{ada_key['id']}", headers=credentials)
        assert refused.status_code == 404  # not 403: its existence is not revealed
        assert refused.json()["error"] == "api_key_not_found"
        unknown = await client.delete(
            "/api-keys/00000000-0000-0000-0000-000000000000", headers=credentials
        )
        assert unknown.json() == refused.json()

    assert len(await stored_keys(db)) == 2
    me = await client.get("/me", headers=bearer(ada_key["key"]))
    assert me.json()["email"] == "ada@example.com"


async def test_key_endpoints_require_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api-keys")).status_code == 401
    assert (await client.post("/api-keys", json={"name": "x"})).status_code == 401
    deleted = await client.delete("/api-keys/00000000-0000-0000-0000-000000000000")
    assert deleted.status_code == 401


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
async def test_a_key_needs_a_sensible_name(
    client: httpx.AsyncClient, settings: Settings, session: Any, name: str
) -> None:
    user = await create_user(session)
    response = await client.post(
        "/api-keys", json={"name": name}, headers=auth_headers(settings, user)
    )
    assert response.status_code == 422


async def test_last_used_at_is_written_at_most_once_a_minute(session: Any) -> None:
    user = await create_user(session)
    created = await api_keys.create_api_key(session, user.id, "ci")
    await session.commit()
    start = utcnow()

    async def use(at: Any) -> Any:
        assert await api_keys.authenticate(session, created.key, now=at) is not None
        await session.commit()
        return await session.scalar(
            select(ApiKey.last_used_at).where(ApiKey.id == created.record.id)
        )

    assert await use(start) == start
    assert await use(start + timedelta(seconds=59)) == start  # no write within the minute
    later = start + timedelta(seconds=61)
    assert await use(later) == later
    await session.commit()


async def test_a_user_holds_a_bounded_number_of_keys(session: Any) -> None:
    user = await create_user(session)
    for index in range(api_keys.MAX_KEYS_PER_USER):
        await api_keys.create_api_key(session, user.id, f"key {index}")
    with pytest.raises(api_keys.TooManyApiKeysError):
        await api_keys.create_api_key(session, user.id, "one too many")
    await session.rollback()
