"""The local OIDC provider behaves like Google through the real protocol.

Every flow here goes through authlib, the library the app signs in with:
its httpx OAuth2 client for the raw code flow, and the Starlette
integration's client (create_authorization_url / fetch_access_token /
parse_id_token, the steps of authorize_redirect + authorize_access_token)
for the failures the app must detect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import httpx2
import pytest
import pytest_asyncio
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from authlib.oidc.core import CodeIDToken, UserInfo
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.oidc import AuthorizeError, OIDCProvider, OIDCProviderError

pytestmark = pytest.mark.asyncio

REDIRECT_URI = "http://app.test/auth/google/callback"
SCOPE = "openid email profile"


@pytest.fixture(scope="module")
def provider_process() -> Iterator[OIDCProvider]:
    with OIDCProvider(redirect_uris=[REDIRECT_URI]) as provider:
        yield provider


@pytest.fixture
def provider(provider_process: OIDCProvider) -> OIDCProvider:
    provider_process.reset()
    return provider_process


def queue_ada(provider: OIDCProvider, **knobs: Any) -> None:
    provider.next_login(sub="google-ada", email="ada@example.com", name="Ada Lovelace", **knobs)


def app_claims_options(provider: OIDCProvider) -> dict[str, Any]:
    # What the app should pass to parse_id_token: authlib's default checks
    # only iss, and aud only indirectly through azp.
    return {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": provider.client_id},
    }


def register_app_client(provider: OIDCProvider) -> StarletteOAuth2App:
    """The client exactly as the app registers it (fresh: no cached metadata or keys)."""
    oauth = OAuth()
    client: StarletteOAuth2App = oauth.register(
        "google",
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        server_metadata_url=provider.discovery_url,
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"},
    )
    return client


async def fetch_access_token(google: StarletteOAuth2App, **params: str) -> dict[str, Any]:
    # types-authlib leaves fetch_access_token untyped.
    token: dict[str, Any] = await google.fetch_access_token(**params)  # type: ignore[no-untyped-call]
    return token


async def app_code_and_token(
    provider: OIDCProvider, google: StarletteOAuth2App
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the app side of the flow up to the token response."""
    request: dict[str, Any] = await google.create_authorization_url(REDIRECT_URI)
    callback = httpx.URL(await provider.authorize(request["url"]))
    assert callback.params["state"] == request["state"]
    token = await fetch_access_token(
        google,
        redirect_uri=REDIRECT_URI,
        code=callback.params["code"],
        code_verifier=request["code_verifier"],
    )
    return request, token


async def app_sign_in(
    provider: OIDCProvider,
    google: StarletteOAuth2App | None = None,
    claims_options: dict[str, Any] | None = None,
) -> UserInfo:
    google = google or register_app_client(provider)
    request, token = await app_code_and_token(provider, google)
    userinfo: UserInfo = await google.parse_id_token(
        token, nonce=request["nonce"], claims_options=claims_options
    )
    return userinfo


async def authorize_code(provider: OIDCProvider, **params: str) -> str:
    """Get a code from /authorize with hand-made parameters (no client library)."""
    query = {
        "client_id": provider.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": SCOPE,
        "state": "s1",
        **params,
    }
    url = httpx.URL(f"{provider.issuer}/authorize", params=query)
    callback = httpx.URL(await provider.authorize(str(url)))
    return callback.params["code"]


async def post_token(
    provider: OIDCProvider, data: dict[str, str], *, basic: bool = True
) -> httpx.Response:
    auth = httpx.BasicAuth(provider.client_id, provider.client_secret) if basic else None
    async with httpx.AsyncClient(auth=auth) as client:
        return await client.post(f"{provider.issuer}/token", data=data)


# ---- discovery and the happy path ----


async def test_discovery_points_at_this_provider(provider: OIDCProvider) -> None:
    async with httpx.AsyncClient() as client:
        metadata = (await client.get(provider.discovery_url)).json()
        jwks = (await client.get(metadata["jwks_uri"])).json()
    assert metadata["issuer"] == provider.issuer
    for endpoint in (
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
    ):
        assert metadata[endpoint].startswith(f"{provider.issuer}/")
    assert "S256" in metadata["code_challenge_methods_supported"]
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    assert [(k["kty"], k["alg"]) for k in jwks["keys"]] == [("RSA", "RS256")]
    assert "d" not in jwks["keys"][0]  # public half only


async def test_code_flow_with_state_nonce_and_pkce(provider: OIDCProvider) -> None:
    queue_ada(provider, extra_claims={"picture": "https://example.com/ada.png"})
    async with httpx.AsyncClient() as plain:
        metadata = (await plain.get(provider.discovery_url)).json()
        jwks = (await plain.get(metadata["jwks_uri"])).json()
    code_verifier = generate_token(48)
    nonce = generate_token(20)
    async with AsyncOAuth2Client(
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    ) as client:
        url, state = client.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce
        )
        callback = await provider.authorize(url)
        assert callback.startswith(f"{REDIRECT_URI}?")
        assert httpx.URL(callback).params["state"] == state
        token = await client.fetch_token(
            metadata["token_endpoint"],
            authorization_response=callback,
            state=state,
            code_verifier=code_verifier,
        )
        userinfo = (await client.get(metadata["userinfo_endpoint"])).json()

    decoded = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        app_claims_options(provider),
        {
            "nonce": nonce,
            "client_id": provider.client_id,
            "access_token": token["access_token"],
        },
    )
    claims.validate(leeway=120)  # iss, aud, exp, iat, nbf, nonce, azp
    assert claims["sub"] == "google-ada"
    assert claims["email"] == "ada@example.com"
    assert claims["email_verified"] is True
    assert claims["name"] == "Ada Lovelace"
    assert claims["picture"] == "https://example.com/ada.png"
    assert claims["nonce"] == nonce
    assert token["scope"] == SCOPE
    assert userinfo["sub"] == "google-ada"
    assert userinfo["email"] == "ada@example.com"

    authorize_request = provider.requests()["authorize"][0]
    assert authorize_request["code_challenge_method"] == "S256"
    assert authorize_request["nonce"] == nonce
    token_request = provider.requests()["token"][0]
    assert token_request["client_auth"] == "client_secret_basic"
    assert token_request["has_code_verifier"] is True
    assert token_request["status"] == 200


async def test_app_client_signs_in_and_keeps_per_login_claims(
    provider: OIDCProvider,
) -> None:
    provider.next_login(sub="google-1", email="one@example.com", email_verified=False)
    provider.next_login(sub="google-2", email="two@example.com", name="Two")
    google = register_app_client(provider)
    first = await app_sign_in(provider, google, app_claims_options(provider))
    second = await app_sign_in(provider, google, app_claims_options(provider))
    assert (first["sub"], first["email"], first["email_verified"]) == (
        "google-1",
        "one@example.com",
        False,
    )
    assert "name" not in first
    assert (second["sub"], second["name"]) == ("google-2", "Two")


# ---- knobs: each yields the failure the app must detect ----


@pytest.mark.parametrize(
    ("knobs", "error", "claim"),
    [
        ({"expired": True}, ExpiredTokenError, "exp"),
        ({"audience": "another-client"}, InvalidClaimError, "aud"),
        ({"issuer": "https://accounts.example.invalid"}, InvalidClaimError, "iss"),
        ({"omit_nonce": True}, MissingClaimError, "nonce"),
        ({"nonce": "not-the-nonce-we-sent"}, InvalidClaimError, "nonce"),
    ],
)
async def test_bad_id_token_claims_are_rejected(
    provider: OIDCProvider, knobs: dict[str, Any], error: type[ClaimError], claim: str
) -> None:
    queue_ada(provider, **knobs)
    with pytest.raises(error) as raised:
        await app_sign_in(provider, claims_options=app_claims_options(provider))
    assert raised.value.claim == claim


async def test_foreign_audience_is_rejected_by_authlib_defaults_too(
    provider: OIDCProvider,
) -> None:
    # Without claims_options authlib never compares aud with client_id: it
    # rejects a token minted for another client only because azp differs.
    queue_ada(provider, audience="another-client")
    with pytest.raises(InvalidClaimError) as raised:
        await app_sign_in(provider)
    assert raised.value.claim == "azp"


async def test_only_an_aud_check_catches_a_foreign_aud_with_our_azp(
    provider: OIDCProvider,
) -> None:
    # Why the app must pass an "aud" claims option: with authlib's defaults a
    # token whose aud is someone else's but whose azp is ours gets through.
    foreign = {
        "audience": "another-client",
        "extra_claims": {"azp": provider.client_id},
    }
    queue_ada(provider, **foreign)
    accepted = await app_sign_in(provider)
    assert accepted["aud"] == "another-client"
    queue_ada(provider, **foreign)
    with pytest.raises(InvalidClaimError) as raised:
        await app_sign_in(provider, claims_options=app_claims_options(provider))
    assert raised.value.claim == "aud"


@pytest.mark.parametrize(
    ("knobs", "error"),
    [
        ({"unknown_kid": True}, InvalidKeyIdError),
        ({"bad_signature": True}, BadSignatureError),
    ],
)
async def test_id_token_signed_with_a_key_outside_jwks_is_rejected(
    provider: OIDCProvider, knobs: dict[str, Any], error: type[JoseError]
) -> None:
    queue_ada(provider, **knobs)
    with pytest.raises(error):
        await app_sign_in(provider, claims_options=app_claims_options(provider))


async def test_token_endpoint_error_reaches_the_client(provider: OIDCProvider) -> None:
    queue_ada(provider, token_error="invalid_grant")
    with pytest.raises(OAuthError) as raised:
        await app_code_and_token(provider, register_app_client(provider))
    assert raised.value.error == "invalid_grant"


async def test_user_denial_redirects_back_with_error_and_state(
    provider: OIDCProvider,
) -> None:
    queue_ada(provider, authorize_error="access_denied")
    request = await register_app_client(provider).create_authorization_url(REDIRECT_URI)
    callback = httpx.URL(await provider.authorize(request["url"]))
    assert callback.params["error"] == "access_denied"
    assert callback.params["state"] == request["state"]
    assert "code" not in callback.params


async def test_replayed_code_fails_and_revokes_the_first_tokens(
    provider: OIDCProvider,
) -> None:
    queue_ada(provider)
    google = register_app_client(provider)
    request: dict[str, Any] = await google.create_authorization_url(REDIRECT_URI)
    code = httpx.URL(await provider.authorize(request["url"])).params["code"]
    exchange = {
        "redirect_uri": REDIRECT_URI,
        "code": code,
        "code_verifier": request["code_verifier"],
    }
    token = await fetch_access_token(google, **exchange)

    with pytest.raises(OAuthError) as raised:
        await fetch_access_token(google, **exchange)
    assert raised.value.error == "invalid_grant"
    async with httpx.AsyncClient() as client:
        userinfo = await client.get(
            f"{provider.issuer}/userinfo",
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
    assert userinfo.status_code == 401


# ---- what the provider checks that oauth2-mock-server alone does not ----


async def test_wrong_client_secret_is_invalid_client(provider: OIDCProvider) -> None:
    queue_ada(provider)
    code = await authorize_code(provider)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
    }
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{provider.issuer}/token", data=data, auth=(provider.client_id, "wrong")
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_client_secret_post_is_accepted(provider: OIDCProvider) -> None:
    queue_ada(provider)
    code = await authorize_code(provider)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
    }
    response = await post_token(provider, data, basic=False)
    assert response.status_code == 200, response.text
    assert provider.requests()["token"][0]["client_auth"] == "client_secret_post"


@pytest.mark.parametrize(
    "change",
    [
        {"code": "never-issued"},
        {"redirect_uri": "http://app.test/elsewhere"},
        {"code_verifier": "x" * 43},  # not the verifier behind the challenge
        {"code_verifier": None},  # challenge sent at /authorize, verifier omitted
    ],
)
async def test_token_request_not_matching_the_authorization_is_invalid_grant(
    provider: OIDCProvider, change: dict[str, str | None]
) -> None:
    queue_ada(provider)
    verifier = generate_token(48)
    code = await authorize_code(provider, code_challenge=verifier, code_challenge_method="plain")
    data: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        **change,
    }
    response = await post_token(provider, {k: v for k, v in data.items() if v is not None})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_authorize_refuses_unknown_client_unregistered_redirect_and_no_login(
    provider: OIDCProvider,
) -> None:
    queue_ada(provider)
    with pytest.raises(AuthorizeError) as raised:
        await authorize_code(provider, client_id="someone-else")
    assert raised.value.status_code == 401
    with pytest.raises(AuthorizeError) as raised:
        await authorize_code(provider, redirect_uri="http://evil.test/callback")
    assert "redirect_uri_mismatch" in raised.value.body
    await authorize_code(provider)  # consumes the queued login
    with pytest.raises(AuthorizeError) as raised:
        await authorize_code(provider)
    assert raised.value.status_code == 409


async def test_control_api_rejects_unknown_knobs(provider: OIDCProvider) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{provider.issuer}/__control/logins",
            json={"sub": "s", "email": "e", "expird": True},
        )
    assert response.status_code == 400
    assert "expird" in response.json()["error"]


# ---- outages and lifecycle ----


async def test_provider_down_refuses_connections_then_recovers(
    provider: OIDCProvider,
) -> None:
    google = register_app_client(provider)
    queue_ada(provider)
    await app_sign_in(provider, google, app_claims_options(provider))  # caches metadata and JWKS
    issuer = provider.issuer

    # authlib uses httpx2 when it is installed (the openai SDK brings it).
    with provider.down(), pytest.raises((httpx.ConnectError, httpx2.ConnectError)):
        await register_app_client(provider).load_server_metadata()

    assert provider.issuer == issuer
    # The restart brought a new signing key: the cached client refetches JWKS.
    queue_ada(provider)
    userinfo = await app_sign_in(provider, google, app_claims_options(provider))
    assert userinfo["sub"] == "google-ada"


async def test_stop_always_ends_the_process() -> None:
    with OIDCProvider() as provider:
        assert provider.running
        discovery_url = provider.discovery_url
    assert not provider.running
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(discovery_url)
    provider.stop()  # idempotent
    with pytest.raises(OIDCProviderError):
        provider.next_login(sub="s", email="e")


# ---- the browser helper against a real Starlette app with authlib's integration ----


def build_starlette_app(provider: OIDCProvider) -> Starlette:
    """The smallest app that signs in the way AccessAI will (session-held state)."""
    google = register_app_client(provider)

    async def login(request: Request) -> Response:
        redirect_uri = request.url_for("callback")
        response: Response = await google.authorize_redirect(request, redirect_uri)
        return response

    async def callback(request: Request) -> Response:
        try:
            # types-authlib leaves authorize_access_token untyped.
            token = await google.authorize_access_token(  # type: ignore[no-untyped-call]
                request, claims_options=app_claims_options(provider)
            )
        except (OAuthError, JoseError) as error:
            return JSONResponse({"error": type(error).__name__}, status_code=401)
        return JSONResponse({"sub": token["userinfo"]["sub"]})

    return Starlette(
        routes=[
            Route("/auth/google", login),
            Route("/auth/google/callback", callback, name="callback"),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="test-only")],
    )


@pytest_asyncio.fixture
async def app_client(provider: OIDCProvider) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_starlette_app(provider))
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        yield client


async def test_authorize_helper_drives_an_app_sign_in(
    provider: OIDCProvider, app_client: httpx.AsyncClient
) -> None:
    queue_ada(provider)
    start = await app_client.get("/auth/google")
    assert start.status_code == 302
    callback = await provider.authorize(start.headers["location"])
    assert callback.startswith(f"{REDIRECT_URI}?")
    done = await app_client.get(callback)
    assert done.json() == {"sub": "google-ada"}

    # The same callback again: the app consumed the state, so it never reaches /token.
    again = await app_client.get(callback)
    assert again.status_code == 401
    assert [t["status"] for t in provider.requests()["token"]] == [200]


@pytest.mark.parametrize(
    ("param", "token_errors"),
    [("state", []), ("code", ["invalid_grant"])],
)
async def test_tampered_callback_is_refused(
    provider: OIDCProvider,
    app_client: httpx.AsyncClient,
    param: str,
    token_errors: list[str],
) -> None:
    queue_ada(provider)
    start = await app_client.get("/auth/google")
    callback = httpx.URL(await provider.authorize(start.headers["location"]))
    forged = callback.copy_set_param(param, "forged-value")
    response = await app_client.get(str(forged))
    assert response.status_code == 401
    # A forged state stops the app; a forged code reaches the provider, which refuses it.
    assert [t["error"] for t in provider.requests()["token"]] == token_errors
