"""Our access tokens: what they carry, and every way a bad one is refused with a bare 401."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import delete

from accessai.core.config import Settings
from accessai.core.security import issue_access_token
from accessai.users.models import User
from tests.factories import auth_headers, create_user
from tests.support.app import running_app
from tests.support.settings import TEST_JWT_SECRET

UNAUTHORIZED_BODY = {"error": "unauthorized", "message": "Missing or invalid credentials."}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    # The same bare body whatever failed: nothing to learn from it.
    assert response.json() == UNAUTHORIZED_BODY


async def test_an_issued_token_carries_the_documented_claims(
    settings: Settings, session: Any
) -> None:
    user = await create_user(session, email="ada@example.com")
    now = datetime.now(UTC).replace(microsecond=0)
    issued = issue_access_token(settings, user, now=now)

    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "HS256"
    assert header["kid"] == settings.jwt_key_id
    claims = jwt.decode(
        issued.token,
        settings.jwt_secret.get_secret_value(),
        algorithms=["HS256"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert set(claims) == {"sub", "email", "iat", "exp", "iss", "aud", "jti"}
    assert claims["sub"] == str(user.id)
    assert claims["email"] == "ada@example.com"
    assert claims["iat"] == int(now.timestamp())
    assert claims["exp"] - claims["iat"] == 60 * 60 == issued.expires_in
    another = issue_access_token(settings, user, now=now)
    assert jwt.decode(another.token, options={"verify_signature": False})["jti"] != claims["jti"]


async def test_the_lifetime_is_a_setting(
    settings_factory: Callable[..., Settings], session: Any
) -> None:
    user = await create_user(session)
    issued = issue_access_token(settings_factory(access_token_ttl_minutes=5), user)
    assert issued.expires_in == 300


async def test_a_valid_token_is_accepted(
    client: httpx.AsyncClient, settings: Settings, session: Any
) -> None:
    user = await create_user(session, email="ada@example.com")
    response = await client.get("/me", headers=auth_headers(settings, user))
    assert response.status_code == 200
    assert response.json()["id"] == str(user.id)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("Bearer", id="empty"),
        pytest.param("Bearer not-a-token", id="garbage"),
        pytest.param("Bearer a.b.c", id="garbage-segments"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
        pytest.param("Token abc", id="other-scheme"),
    ],
)
async def test_missing_or_malformed_credentials_are_refused(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_refused(await client.get("/me", headers=headers))


async def test_an_expired_token_is_refused(
    client: httpx.AsyncClient, settings: Settings, session: Any
) -> None:
    user = await create_user(session)
    issued = issue_access_token(settings, user, now=datetime.now(UTC) - timedelta(hours=2))
    assert_refused(await client.get("/me", headers={"Authorization": f"Bearer {issued.token}"}))


async def test_a_tampered_payload_is_refused(
    client: httpx.AsyncClient, settings: Settings, session: Any
) -> None:
    victim = await create_user(session)
    attacker = await create_user(session)
    header, payload, signature = issue_access_token(settings, attacker).token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(victim.id)
    forged = f"{header}.{b64(claims)}.{signature}"
    assert_refused(await client.get("/me", headers={"Authorization": f"Bearer {forged}"}))


async def test_a_token_signed_with_another_secret_is_refused(
    client: httpx.AsyncClient, settings_factory: Callable[..., Settings], session: Any
) -> None:
    user = await create_user(session)
    other = settings_factory(jwt_secret="another-secret-that-is-long-enough-0123456789")
    token = issue_access_token(other, user).token
    assert_refused(await client.get("/me", headers={"Authorization": f"Bearer {token}"}))


async def test_alg_none_is_refused(
    client: httpx.AsyncClient, settings: Settings, session: Any
) -> None:
    user = await create_user(session)
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "sub": str(user.id),
        "email": user.email,
        "iat": now,
        "exp": now + 600,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": "x",
    }
    for alg in ("none", "None", "NONE"):
        token = f"{b64({'alg': alg, 'typ': 'JWT', 'kid': settings.jwt_key_id})}.{b64(claims)}."
        assert_refused(await client.get("/me", headers={"Authorization": f"Bearer {token}"}))


async def test_another_hmac_algorithm_than_the_pinned_one_is_refused(
    client: httpx.AsyncClient, settings_factory: Callable[..., Settings], session: Any
) -> None:
    user = await create_user(session)
    hs512 = settings_factory(jwt_algorithm="HS512", jwt_secret=TEST_JWT_SECRET * 2)
    token = issue_access_token(hs512, user).token
    assert_refused(await client.get("/me", headers={"Authorization": f"Bearer {token}"}))


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"jwt_audience": "another-api"}, id="wrong-audience"),
        pytest.param({"jwt_issuer": "someone-else"}, id="wrong-issuer"),
    ],
)
async def test_a_token_for_another_audience_or_issuer_is_refused(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    session: Any,
    override: dict[str, str],
) -> None:
    user = await create_user(session)
    token = issue_access_token(settings_factory(**override), user).token
    assert_refused(await client.get("/me", headers={"Authorization": f"Bearer {token}"}))


async def test_a_token_missing_a_required_claim_is_refused(
    client: httpx.AsyncClient, settings: Settings, session: Any
) -> None:
    user = await create_user(session)
    now = datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }  # no jti, no email
    token = jwt.encode(
        claims,
        settings.jwt_secret.get_secret_value(),
        algorithm="HS256",
        headers={"kid": settings.jwt_key_id},
    )
    assert_refused(await client.get("/me", headers={"Authorization": f"Bearer {token}"}))


async def test_a_deleted_users_token_is_refused(
    client: httpx.AsyncClient, settings: Settings, session: Any
) -> None:
    user = await create_user(session)
    headers = auth_headers(settings, user)
    assert (await client.get("/me", headers=headers)).status_code == 200
    await session.execute(delete(User).where(User.id == user.id))
    await session.commit()
    assert_refused(await client.get("/me", headers=headers))


# --- Key rotation ---------------------------------------------------------------------

OLD_SECRET = "the-old-secret-that-is-long-enough-0123456789"
NEW_SECRET = "the-new-secret-that-is-long-enough-9876543210"


async def test_rotation_accepts_previous_keys_and_refuses_unknown_kids(
    settings_factory: Callable[..., Settings], session: Any
) -> None:
    user = await create_user(session)
    before = settings_factory(jwt_key_id="2025", jwt_secret=OLD_SECRET)
    after = settings_factory(
        jwt_key_id="2026", jwt_secret=NEW_SECRET, jwt_previous_keys=f"2025:{OLD_SECRET}"
    )
    old_token = issue_access_token(before, user).token
    new_token = issue_access_token(after, user).token
    unknown_kid = issue_access_token(
        settings_factory(jwt_key_id="ghost", jwt_secret=NEW_SECRET), user
    ).token
    # Right kid, wrong key: the kid picks the key, it does not choose any key that fits.
    old_kid_new_key = issue_access_token(
        settings_factory(jwt_key_id="2025", jwt_secret=NEW_SECRET), user
    ).token
    assert jwt.get_unverified_header(new_token)["kid"] == "2026"

    async with running_app(after) as (_, client):

        async def me(token: str) -> httpx.Response:
            return await client.get("/me", headers={"Authorization": f"Bearer {token}"})

        assert (await me(old_token)).status_code == 200
        assert (await me(new_token)).status_code == 200
        assert_refused(await me(unknown_kid))
        assert_refused(await me(old_kid_new_key))

    # Once the old key is dropped from the list, its tokens stop working.
    retired = settings_factory(jwt_key_id="2026", jwt_secret=NEW_SECRET)
    async with running_app(retired) as (_, client):
        response = await client.get("/me", headers={"Authorization": f"Bearer {old_token}"})
        assert_refused(response)


async def test_a_successful_request_logs_the_user_id(
    client: httpx.AsyncClient,
    settings: Settings,
    session: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = await create_user(session)
    capsys.readouterr()
    await client.get("/me", headers=auth_headers(settings, user))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    [request_line] = [line for line in lines if line["event"] == "request.completed"]
    assert request_line["user_id"] == str(user.id)
