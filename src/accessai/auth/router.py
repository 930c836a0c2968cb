"""Sign-in with Google (any OIDC provider) and personal API keys. HTTP only."""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from accessai.auth import api_keys
from accessai.auth import service as auth_service
from accessai.auth.oidc import OIDCClient, not_configured_error
from accessai.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, TokenResponse
from accessai.core.config import Settings
from accessai.core.db import SessionDep
from accessai.core.errors import AppError, BadRequestError, UnauthorizedError
from accessai.core.security import CurrentUser, SettingsDep, issue_access_token
from accessai.hardening.ratelimit import auth_rate_limit
from accessai.observability.logging import get_logger
from accessai.users import service as users
from accessai.users.models import User
from accessai.users.schemas import UserOut

router = APIRouter()
log = get_logger("accessai.auth")

# Keys of our own in the sign-in cookie (authlib keeps its state there too).
_RETURN_TO = "return_to"
_HANDOFF = "signed_in"
# How long a browser has to collect its token after the redirect to return_to.
HANDOFF_TTL_SECONDS = 120
# Only a path on this site: no scheme, no host, no "//host" or "/\host" tricks.
_SAFE_RETURN_TO = re.compile(r"^/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?#]*$")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def get_oidc_client(request: Request, settings: SettingsDep) -> OIDCClient:
    client: OIDCClient | None = getattr(request.app.state, "oidc", None)
    if client is None:
        raise not_configured_error(settings)
    return client


OIDCClientDep = Annotated[OIDCClient, Depends(get_oidc_client)]


def _token_body(settings: Settings, user: User, response: Response) -> TokenResponse:
    issued = issue_access_token(settings, user)
    response.headers.update(_NO_STORE)
    return TokenResponse(
        access_token=issued.token, expires_in=issued.expires_in, user=UserOut.model_validate(user)
    )


# --- Sign-in -------------------------------------------------------------------


@router.get(
    "/auth/google",
    tags=["auth"],
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={503: {"description": "Sign-in is not configured or the provider is down."}},
    dependencies=[Depends(auth_rate_limit)],
)
async def google_sign_in(
    request: Request,
    oidc: OIDCClientDep,
    return_to: Annotated[
        str | None,
        Query(
            max_length=512,
            description="A path on this site to send the browser to after sign-in; "
            "it then collects its token with POST /auth/token.",
        ),
    ] = None,
) -> RedirectResponse:
    """Send the browser to the identity provider."""
    if return_to is not None and not _SAFE_RETURN_TO.match(return_to):
        raise BadRequestError("return_to must be a path on this site, such as /dashboard.")
    url = await oidc.authorization_url(request)
    if return_to is None:
        request.session.pop(_RETURN_TO, None)
    else:
        request.session[_RETURN_TO] = return_to
    return RedirectResponse(url, status_code=status.HTTP_302_FOUND, headers=_NO_STORE)


@router.get(
    "/auth/callback",
    tags=["auth"],
    response_model=TokenResponse,
    dependencies=[Depends(auth_rate_limit)],
)
async def google_callback(
    request: Request,
    response: Response,
    oidc: OIDCClientDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Any:
    """Finish sign-in: verify the provider's answer and return our access token.

    Started with ``return_to``, it instead redirects there and the page
    collects the token with ``POST /auth/token``, so the token never appears
    in a URL.
    """
    return_to = request.session.pop(_RETURN_TO, None)
    try:
        verified = await oidc.verify_callback(request)
        identity = auth_service.identity_from_claims(verified.claims)
        user, _created = await auth_service.sign_in(
            session, identity, signup_bonus=settings.signup_bonus_credits
        )
    except AppError as error:
        log.info("auth.sign_in_failed", error=error.code, status=error.status_code)
        raise
    if isinstance(return_to, str):
        request.session[_HANDOFF] = {
            "user_id": str(user.id),
            "exp": time.time() + HANDOFF_TTL_SECONDS,
        }
        return RedirectResponse(return_to, status_code=status.HTTP_303_SEE_OTHER, headers=_NO_STORE)
    return _token_body(settings, user, response)


@router.post(
    "/auth/token",
    tags=["auth"],
    response_model=TokenResponse,
    dependencies=[Depends(auth_rate_limit)],
)
async def collect_token(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    """Hand a page its access token after a ``return_to`` sign-in (once, same site only)."""
    pending = request.session.pop(_HANDOFF, None)
    user = None
    if isinstance(pending, dict) and float(pending.get("exp", 0)) > time.time():
        try:
            user = await users.get_user(session, uuid.UUID(str(pending.get("user_id"))))
        except ValueError:
            user = None
    if user is None:
        raise UnauthorizedError("No sign-in to collect; start again at /auth/google.")
    return _token_body(settings, user, response)


# --- API keys --------------------------------------------------------------------


@router.post(
    "/api-keys",
    tags=["api-keys"],
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
)
async def create_api_key(
    body: ApiKeyCreate, user: CurrentUser, session: SessionDep, response: Response
) -> ApiKeyCreated:
    """Create a key; the response is the only place the full key ever appears."""
    created = await api_keys.create_api_key(session, user.id, body.name)
    response.headers.update(_NO_STORE)
    return ApiKeyCreated(**ApiKeyOut.model_validate(created.record).model_dump(), key=created.key)


@router.get("/api-keys", tags=["api-keys"], response_model=list[ApiKeyOut])
async def list_api_keys(user: CurrentUser, session: SessionDep) -> list[ApiKeyOut]:
    """The caller's keys, newest first (never the keys themselves)."""
    return [ApiKeyOut.model_validate(key) for key in await api_keys.list_api_keys(session, user.id)]


@router.delete("/api-keys/{key_id}", tags=["api-keys"], status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(key_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    """Revoke one of the caller's keys; it stops working at once."""
    await api_keys.revoke_api_key(session, user.id, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
