"""Google sign-in, end to end against the local OIDC provider on loopback.

The app's own code runs unpatched: authlib talks HTTP to the stand-in, which
signs real RS256 ID tokens; each test queues who signs in (and how the
provider misbehaves) with `next_login`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from accessai.credits import service as credits
from accessai.credits.models import CreditTransaction
from accessai.users.models import User
from tests.auth.conftest import CALLBACK_URL
from tests.factories import create_user
from tests.support.app import browser, running_app
from tests.support.oidc import OIDCProvider
from tests.support.rows import count_rows

SIGNUP_BONUS = 100


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], google: OIDCProvider) -> Settings:
    return settings_factory(
        google_client_id=google.client_id,
        google_client_secret=google.client_secret,
        oidc_discovery_url=google.discovery_url,
        signup_bonus_credits=SIGNUP_BONUS,
    )


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = query_of(url)
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


async def start(client: httpx.AsyncClient, **params: str) -> str:
    response = await client.get("/auth/google", params=params)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    return location


async def provider_callback(client: httpx.AsyncClient, google: OIDCProvider, **login: Any) -> str:
    """Queue a login, start sign-in and let the provider answer: the callback URL."""
    login.setdefault("sub", "google-ada")
    login.setdefault("email", "ada@example.com")
    google.next_login(**login)
    return await google.authorize(await start(client))


async def sign_in(client: httpx.AsyncClient, google: OIDCProvider, **login: Any) -> httpx.Response:
    return await client.get(await provider_callback(client, google, **login))


async def users_in(db: Any) -> list[User]:
    async with create_sessionmaker(db.engine)() as session:
        return list(await session.scalars(select(User).order_by(User.created_at)))


# --- The happy path --------------------------------------------------------------


async def test_first_sign_in_creates_the_user_and_returns_our_token(
    client: httpx.AsyncClient, google: OIDCProvider, db: Any
) -> None:
    response = await sign_in(client, google, sub="google-ada", email="Ada@Example.com", name="Ada")

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert set(body["user"]) == {"id", "email", "name", "created_at"}
    assert body["user"]["email"] == "ada@example.com"
    assert body["user"]["name"] == "Ada"

    [user] = await users_in(db)
    assert str(user.id) == body["user"]["id"]
    assert user.google_id == "google-ada"
    async with create_sessionmaker(db.engine)() as session:
        assert await credits.get_balance(session, user.id) == SIGNUP_BONUS

    me = await client.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == body["user"]


async def test_the_flow_uses_state_nonce_pkce_and_a_short_lived_cookie(
    client: httpx.AsyncClient, google: OIDCProvider
) -> None:
    google.next_login(sub="google-ada", email="ada@example.com")
    response = await client.get("/auth/google")
    assert response.status_code == 302
    query = query_of(response.headers["location"])
    assert response.headers["location"].startswith(f"{google.issuer}/authorize?")
    assert query["response_type"] == "code"
    assert query["client_id"] == google.client_id
    assert query["redirect_uri"] == CALLBACK_URL
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert len(query["state"]) >= 20
    assert len(query["nonce"]) >= 20
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"]

    cookie = response.headers["set-cookie"]
    assert cookie.startswith("accessai_auth=")
    for attribute in ("path=/auth", "max-age=600", "httponly", "samesite=lax"):
        assert attribute in cookie.lower()
    # Signed, not a plain store: the verifier must not be readable as such.
    assert query["state"] not in cookie

    callback = await google.authorize(response.headers["location"])
    done = await client.get(callback)
    assert done.status_code == 200
    # The state is one-shot: the cookie is cleared by the callback.
    assert "accessai_auth=null" in done.headers["set-cookie"]
    [token_call] = google.requests()["token"]
    assert token_call["has_code_verifier"] is True
    assert token_call["status"] == 200


async def test_a_later_sign_in_finds_the_user_and_follows_google_profile_changes(
    client: httpx.AsyncClient, google: OIDCProvider, db: Any
) -> None:
    first = await sign_in(client, google, sub="google-ada", email="ada@example.com", name="Ada")
    second = await sign_in(
        client, google, sub="google-ada", email="ada@new.example.com", name="Ada Lovelace"
    )
    assert second.status_code == 200
    assert second.json()["user"]["id"] == first.json()["user"]["id"]
    [user] = await users_in(db)
    assert (user.email, user.name) == ("ada@new.example.com", "Ada Lovelace")
    bonuses = await count_rows(
        db.engine, CreditTransaction, CreditTransaction.reason == credits.Reason.SIGNUP_BONUS
    )
    assert bonuses == 1


async def test_sign_in_links_a_user_made_by_the_cli_with_the_same_email(
    client: httpx.AsyncClient, google: OIDCProvider, session: Any, db: Any
) -> None:
    local = await create_user(session, email="ada@example.com", name=None, credits=SIGNUP_BONUS)
    await session.close()
    response = await sign_in(client, google, sub="google-ada", email="ada@example.com", name="Ada")
    assert response.status_code == 200
    assert response.json()["user"]["id"] == str(local.id)
    [user] = await users_in(db)
    assert (user.google_id, user.name) == ("google-ada", "Ada")
    assert await count_rows(db.engine, CreditTransaction) == 1  # no second bonus


async def test_an_email_held_by_another_google_account_is_a_conflict(
    client: httpx.AsyncClient, google: OIDCProvider, session: Any, db: Any
) -> None:
    await create_user(session, email="ada@example.com", google_id="google-someone-else")
    await session.close()
    response = await sign_in(client, google, sub="google-ada", email="ada@example.com")
    assert response.status_code == 409
    assert response.json()["error"] == "email_in_use"
    assert len(await users_in(db)) == 1


async def test_an_email_change_to_an_address_taken_by_another_user_keeps_the_old_one(
    client: httpx.AsyncClient, google: OIDCProvider, session: Any, db: Any
) -> None:
    first = await sign_in(client, google, sub="google-ada", email="ada@example.com")
    await create_user(session, email="taken@example.com")
    await session.close()
    again = await sign_in(client, google, sub="google-ada", email="taken@example.com")
    assert again.status_code == 200
    assert again.json()["user"] == {**first.json()["user"], "name": None}
    assert len(await users_in(db)) == 2


async def test_a_provider_restarted_with_a_new_signing_key_still_signs_in(
    client: httpx.AsyncClient, google: OIDCProvider
) -> None:
    assert (await sign_in(client, google)).status_code == 200  # caches discovery and JWKS
    with google.down():
        pass  # back on the same port with a new key
    assert (await sign_in(client, google)).status_code == 200


# --- Return to a page, token collected without a URL -------------------------------


async def test_return_to_redirects_and_the_page_collects_its_token_once(
    client: httpx.AsyncClient, google: OIDCProvider
) -> None:
    google.next_login(sub="google-ada", email="ada@example.com")
    callback = await google.authorize(await start(client, return_to="/dashboard?tab=credits"))
    done = await client.get(callback)
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard?tab=credits"
    assert "token" not in done.headers["location"]

    collected = await client.post("/auth/token")
    assert collected.status_code == 200
    assert collected.json()["user"]["email"] == "ada@example.com"
    me = await client.get(
        "/me", headers={"Authorization": f"Bearer {collected.json()['access_token']}"}
    )
    assert me.status_code == 200

    again = await client.post("/auth/token")
    assert again.status_code == 401


async def test_another_browser_cannot_collect_the_token(
    app: FastAPI, client: httpx.AsyncClient, google: OIDCProvider
) -> None:
    google.next_login(sub="google-ada", email="ada@example.com")
    callback = await google.authorize(await start(client, return_to="/dashboard"))
    assert (await client.get(callback)).status_code == 303
    async with browser(app) as other:
        assert (await other.post("/auth/token")).status_code == 401


@pytest.mark.parametrize(
    "return_to", ["//evil.example/", "https://evil.example/", "/\\evil.example", "dashboard"]
)
async def test_return_to_must_be_a_path_on_this_site(
    client: httpx.AsyncClient, return_to: str
) -> None:
    response = await client.get("/auth/google", params={"return_to": return_to})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


# --- Every failure is a clear error and creates nothing --------------------------


@pytest.mark.parametrize(
    ("login", "status", "error"),
    [
        pytest.param({"expired": True}, 401, "invalid_id_token", id="expired-id-token"),
        pytest.param({"audience": "other-client"}, 401, "invalid_id_token", id="other-client"),
        # Our azp but a foreign aud: only the audience check catches it.
        pytest.param(
            {"extra_claims": {"aud": "other-client"}}, 401, "invalid_id_token", id="wrong-aud"
        ),
        pytest.param({"unknown_kid": True}, 401, "invalid_id_token", id="unknown-signing-key"),
        pytest.param({"bad_signature": True}, 401, "invalid_id_token", id="bad-signature"),
        pytest.param({"issuer": "https://evil.example"}, 401, "invalid_id_token", id="issuer"),
        pytest.param({"nonce": "not-the-one-we-sent"}, 401, "invalid_id_token", id="nonce"),
        pytest.param({"omit_nonce": True}, 401, "invalid_id_token", id="missing-nonce"),
        pytest.param({"email_verified": False}, 403, "email_not_verified", id="unverified-email"),
        pytest.param(
            {"extra_claims": {"email_verified": "false"}},
            403,
            "email_not_verified",
            id="unverified-email-string",
        ),
        pytest.param({"token_error": "invalid_grant"}, 400, "invalid_code", id="bad-code"),
        pytest.param(
            {"token_error": "invalid_client"}, 502, "identity_provider_error", id="bad-client"
        ),
        pytest.param(
            {"authorize_error": "access_denied"}, 400, "sign_in_denied", id="user-cancelled"
        ),
    ],
)
async def test_a_failed_sign_in_is_refused_and_creates_nothing(
    client: httpx.AsyncClient,
    google: OIDCProvider,
    db: Any,
    login: dict[str, Any],
    status: int,
    error: str,
) -> None:
    callback = await provider_callback(client, google, **login)
    response = await client.get(callback)

    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["message"]
    assert "Traceback" not in response.text
    assert await users_in(db) == []
    # The state was used up: the same callback cannot be tried again.
    retry = await client.get(callback)
    assert retry.status_code == 400
    assert retry.json()["error"] in {"invalid_state", "sign_in_denied"}
    assert await users_in(db) == []


async def test_user_cancelled_names_the_provider_error(
    client: httpx.AsyncClient, google: OIDCProvider
) -> None:
    response = await sign_in(client, google, authorize_error="access_denied")
    assert response.json()["provider_error"] == "access_denied"


async def test_forged_state_is_refused(
    client: httpx.AsyncClient, google: OIDCProvider, db: Any
) -> None:
    callback = await provider_callback(client, google)
    forged = await client.get(with_query(callback, state="forged-state-value"))
    assert forged.status_code == 400
    assert forged.json()["error"] == "invalid_state"
    # Nothing reached the provider's token endpoint, and nothing was created.
    assert google.requests()["token"] == []
    assert await users_in(db) == []


async def test_missing_state_is_refused(
    client: httpx.AsyncClient, google: OIDCProvider, db: Any
) -> None:
    callback = await provider_callback(client, google)
    response = await client.get(with_query(callback, state=None))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_state"
    assert await users_in(db) == []


async def test_missing_code_is_refused(
    client: httpx.AsyncClient, google: OIDCProvider, db: Any
) -> None:
    callback = await provider_callback(client, google)
    response = await client.get(with_query(callback, code=None))
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert await users_in(db) == []


async def test_a_callback_in_another_browser_is_refused(
    app: FastAPI, client: httpx.AsyncClient, google: OIDCProvider, db: Any
) -> None:
    # Login CSRF: an attacker's code and state, delivered to a victim's browser.
    callback = await provider_callback(client, google)
    async with browser(app) as victim:
        response = await victim.get(callback)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_state"
    assert await users_in(db) == []


async def test_a_replayed_code_is_refused(
    client: httpx.AsyncClient, google: OIDCProvider, db: Any
) -> None:
    callback = await provider_callback(client, google)
    assert (await client.get(callback)).status_code == 200
    # Replay the code with a fresh, valid state of this browser.
    fresh_state = query_of(await start(client))["state"]
    replay = await client.get(with_query(callback, state=fresh_state))
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_code"
    assert google.requests()["token"][-1]["error"] == "invalid_grant"
    assert len(await users_in(db)) == 1


async def test_provider_down_at_the_start_is_a_503(
    client: httpx.AsyncClient, google: OIDCProvider
) -> None:
    with google.down():
        response = await client.get("/auth/google")
    assert response.status_code == 503
    assert response.json()["error"] == "identity_provider_unavailable"


async def test_provider_down_at_the_callback_is_a_503_and_creates_nothing(
    client: httpx.AsyncClient, google: OIDCProvider, db: Any
) -> None:
    callback = await provider_callback(client, google)
    with google.down():
        response = await client.get(callback)
    assert response.status_code == 503
    assert response.json()["error"] == "identity_provider_unavailable"
    assert await users_in(db) == []


async def test_a_discovery_url_that_is_not_a_discovery_document_is_a_502(
    settings_factory: Callable[..., Settings], google: OIDCProvider
) -> None:
    settings = settings_factory(
        google_client_id=google.client_id,
        google_client_secret=google.client_secret,
        oidc_discovery_url=f"{google.issuer}/no-such-document",
    )
    async with running_app(settings) as (_, client):
        response = await client.get("/auth/google")
    assert response.status_code == 502
    assert response.json()["error"] == "identity_provider_error"


async def test_without_google_credentials_sign_in_answers_503_naming_the_variables(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory()) as (_, client):
        start_response = await client.get("/auth/google")
        callback = await client.get("/auth/callback", params={"code": "x", "state": "y"})
    assert start_response.status_code == 503
    body = start_response.json()
    assert body["error"] == "sign_in_not_configured"
    assert "GOOGLE_CLIENT_ID" in body["message"]
    assert "GOOGLE_CLIENT_SECRET" in body["message"]
    assert body["missing"] == ["GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"]
    assert callback.status_code == 503


# --- Racing first sign-ins -------------------------------------------------------------


async def test_two_racing_first_sign_ins_create_one_user_and_one_bonus(
    app: FastAPI, google: OIDCProvider, db: Any
) -> None:
    async with browser(app) as laptop, browser(app) as phone:
        callbacks = [
            await provider_callback(laptop, google, sub="google-ada", email="ada@example.com"),
            await provider_callback(phone, google, sub="google-ada", email="ada@example.com"),
        ]
        responses = await asyncio.gather(laptop.get(callbacks[0]), phone.get(callbacks[1]))

    assert [r.status_code for r in responses] == [200, 200]
    ids = {r.json()["user"]["id"] for r in responses}
    assert len(ids) == 1
    assert len(await users_in(db)) == 1
    assert await count_rows(db.engine, CreditTransaction) == 1
