"""The OpenID Connect relying party: Google by default, any provider by discovery URL.

authlib does the protocol (discovery, state, nonce, PKCE, code exchange, ID
token signature and claims); this module configures it, adds the checks it
leaves to the caller (audience, ``id_token`` present) and turns every way the
provider or the browser can fail into one of our JSON errors.

State, nonce and the PKCE verifier live between ``/auth/google`` and
``/auth/callback`` in a signed, short-lived, HttpOnly, SameSite=Lax cookie
(Starlette's ``SessionMiddleware``), so any replica can finish a sign-in that
another one started.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from joserfc.errors import JoseError
from starlette.requests import Request

from accessai.core.config import Settings
from accessai.core.errors import (
    AppError,
    BadRequestError,
    ServiceUnavailableError,
    UnauthorizedError,
    UpstreamError,
)
from accessai.observability.logging import get_logger

log = get_logger("accessai.auth")

CLIENT_NAME = "google"
SCOPES = "openid email profile"
CALLBACK_PATH = "/auth/callback"
# Sign-in waits on the provider; a slow one fails fast instead of holding workers.
PROVIDER_TIMEOUT_SECONDS = 10.0
# Google's discovery document says https://accounts.google.com, but Google
# documents that ID tokens may carry the bare host as issuer too.
_ISSUER_ALIASES = {"https://accounts.google.com": ["accounts.google.com"]}

# The cookie that carries state, nonce and PKCE verifier through the provider.
SESSION_COOKIE = "accessai_auth"
SESSION_COOKIE_PATH = "/auth"
SESSION_MAX_AGE_SECONDS = 600
_SESSION_KEY_LABEL = b"accessai/auth-session-cookie/v1"
_STATE_KEY_PREFIX = f"_state_{CLIENT_NAME}_"
# Provider error codes are echoed to the client only when they look like one.
_OAUTH_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")


# --- Errors ------------------------------------------------------------------


class SignInNotConfiguredError(ServiceUnavailableError):
    code = "sign_in_not_configured"


class IdentityProviderUnavailableError(ServiceUnavailableError):
    code = "identity_provider_unavailable"

    def __init__(self) -> None:
        super().__init__("The identity provider cannot be reached; try again shortly.")


class IdentityProviderError(UpstreamError):
    code = "identity_provider_error"

    def __init__(self, message: str = "The identity provider gave an unusable answer.") -> None:
        super().__init__(message)


class SignInDeniedError(BadRequestError):
    code = "sign_in_denied"


class InvalidStateError(BadRequestError):
    code = "invalid_state"

    def __init__(self) -> None:
        super().__init__(
            "This sign-in link is not valid in this browser (missing, forged or already "
            "used state); start again at /auth/google."
        )


class InvalidCodeError(BadRequestError):
    code = "invalid_code"

    def __init__(self) -> None:
        super().__init__(
            "The identity provider refused the authorization code (expired or already "
            "used); start again at /auth/google."
        )


class InvalidIdTokenError(UnauthorizedError):
    code = "invalid_id_token"

    def __init__(self) -> None:
        super().__init__("The identity provider's ID token failed verification.")


# --- The session cookie --------------------------------------------------------


def session_cookie_secret(settings: Settings) -> str:
    """A key for the sign-in cookie, derived from JWT_SECRET so there is nothing new to set.

    A separate derivation (HMAC with a label) means the cookie key never
    equals the token key, so neither can be used to forge the other.
    """
    secret = settings.jwt_secret.get_secret_value().encode()
    return hmac.new(secret, _SESSION_KEY_LABEL, hashlib.sha256).hexdigest()


def session_middleware_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for Starlette's ``SessionMiddleware``."""
    return {
        "secret_key": session_cookie_secret(settings),
        "session_cookie": SESSION_COOKIE,
        "max_age": SESSION_MAX_AGE_SECONDS,
        "path": SESSION_COOKIE_PATH,
        # Lax: sent on the provider's top-level redirect back to us, not on
        # cross-site subrequests or POSTs.
        "same_site": "lax",
        "https_only": settings.public_base_url.startswith("https://"),
    }


def clear_sign_in_state(session: dict[str, Any]) -> None:
    """Forget every pending sign-in of this browser (one-shot state)."""
    for key in [key for key in session if key.startswith(_STATE_KEY_PREFIX)]:
        del session[key]


# --- The client ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """The claims of an ID token that passed every check."""

    claims: Mapping[str, Any]


@asynccontextmanager
async def _provider_errors() -> AsyncIterator[None]:
    """Turn network trouble with the provider into 503/502, never a stack trace."""
    try:
        yield
    except (httpx2.TransportError, OSError) as error:  # refused, reset, DNS, timeout
        log.warning("auth.provider_unreachable", error=type(error).__name__)
        raise IdentityProviderUnavailableError() from None
    except (httpx2.HTTPStatusError, ValueError, KeyError, RuntimeError) as error:
        # 5xx, a body that is not JSON, a discovery document without endpoints.
        log.warning("auth.provider_bad_answer", error=type(error).__name__)
        raise IdentityProviderError() from None


class OIDCClient:
    """authlib's Starlette OAuth client for the configured provider; one per app."""

    def __init__(self, settings: Settings) -> None:
        if not (settings.google_client_id and settings.google_client_secret):
            raise ValueError("Google sign-in is not configured")
        self.client_id = settings.google_client_id
        self.redirect_uri = settings.public_base_url.rstrip("/") + CALLBACK_PATH
        self._app: StarletteOAuth2App = OAuth().register(
            name=CLIENT_NAME,
            client_id=settings.google_client_id,
            client_secret=settings.google_client_secret.get_secret_value(),
            server_metadata_url=settings.oidc_discovery_url,
            client_kwargs={
                "scope": SCOPES,
                "timeout": PROVIDER_TIMEOUT_SECONDS,
                # authlib opens an HTTP client per call; sharing one TLS context
                # spares loading the CA bundle (~0.1 s of CPU) every time.
                "verify": httpx2.create_ssl_context(),
            },
        )

    async def _metadata(self) -> dict[str, Any]:
        """The discovery document (fetched once, then cached by authlib)."""
        metadata: dict[str, Any] = await self._app.load_server_metadata()
        for field in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(metadata.get(field), str):
                raise ValueError(f"discovery document lacks {field}")
        # PKCE where the provider supports it (RFC 8414: absent means not supported).
        if "S256" in metadata.get("code_challenge_methods_supported", []):
            self._app.client_kwargs["code_challenge_method"] = "S256"
        return metadata

    async def authorization_url(self, request: Request) -> str:
        """Where to send the browser; remembers state, nonce and verifier in its cookie."""
        async with _provider_errors():
            await self._metadata()
            result: dict[str, Any] = await self._app.create_authorization_url(self.redirect_uri)
            await self._app.save_authorize_data(request, redirect_uri=self.redirect_uri, **result)
        url: str = result["url"]
        return url

    async def verify_callback(self, request: Request) -> VerifiedIdentity:
        """Check state, exchange the code and verify the ID token; clear the state either way."""
        params = request.query_params
        try:
            if "error" in params:
                provider_error = params["error"]
                if not _OAUTH_ERROR_CODE.match(provider_error):
                    provider_error = "unknown"
                raise SignInDeniedError(
                    "Sign-in was cancelled or refused at the identity provider.",
                    extra={"provider_error": provider_error},
                )
            if not params.get("state"):
                raise InvalidStateError()
            if not params.get("code"):
                raise BadRequestError("The callback carries no authorization code.")
            return await self._exchange(request)
        finally:
            clear_sign_in_state(request.session)

    async def _exchange(self, request: Request) -> VerifiedIdentity:
        async with _provider_errors():
            metadata = await self._metadata()
            issuer: str = metadata["issuer"]
            claims_options = {
                # Passing options replaces authlib's own issuer check, so it is here.
                "iss": {"essential": True, "values": [issuer, *_ISSUER_ALIASES.get(issuer, [])]},
                # authlib checks azp but not aud unless asked.
                "aud": {"essential": True, "value": self.client_id},
                "sub": {"essential": True},
            }
            try:
                # The stubs leave this one unannotated; it returns the token dict.
                token: dict[str, Any] = await self._app.authorize_access_token(  # type: ignore[no-untyped-call]
                    request, claims_options=claims_options
                )
            except MismatchingStateError:
                raise InvalidStateError() from None
            except OAuthError as error:
                if error.error == "invalid_grant":
                    raise InvalidCodeError() from None
                log.warning("auth.token_endpoint_error", provider_error=str(error.error)[:64])
                raise IdentityProviderError(
                    "The identity provider refused to exchange the code; check "
                    "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET."
                ) from None
            except JoseError as error:
                log.info("auth.id_token_rejected", reason=type(error).__name__)
                raise InvalidIdTokenError() from None
        userinfo = token.get("userinfo")
        if not userinfo:
            # Without an ID token authlib verifies nothing: never trust such an answer.
            raise IdentityProviderError("The identity provider returned no ID token.")
        return VerifiedIdentity(claims=dict(userinfo))


def create_oidc_client(settings: Settings) -> OIDCClient | None:
    """The app's client when sign-in is configured, else None (routes answer 503)."""
    return OIDCClient(settings) if settings.google_configured else None


def not_configured_error(settings: Settings) -> AppError:
    missing = [
        name
        for name, value in (
            ("GOOGLE_CLIENT_ID", settings.google_client_id),
            ("GOOGLE_CLIENT_SECRET", settings.google_client_secret),
        )
        if not value
    ]
    return SignInNotConfiguredError(
        f"Google sign-in is not configured: set {' and '.join(missing)} (and "
        "OIDC_DISCOVERY_URL for a provider other than Google). Locally, "
        "`accessai users token EMAIL` issues a token instead.",
        extra={"missing": missing},
    )
