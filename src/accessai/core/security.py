"""Access tokens we sign, and the dependency that turns a bearer token into a user.

Tokens are HS256 JWTs by default with ``sub`` (user id), ``email``, ``iat``,
``exp``, ``iss``, ``aud`` and ``jti``. The header carries a ``kid`` naming the
key that signed it; verification accepts the current key and any previous
keys listed in ``JWT_PREVIOUS_KEYS``, so a secret can be rotated without
signing everyone out. The algorithm is pinned on decode (no ``alg: none``).

``get_current_user`` accepts either such a token or a personal API key
(``aai_...``) in ``Authorization: Bearer``; every failure is the same bare
401 with ``WWW-Authenticate: Bearer``, never saying which check failed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.auth import api_keys
from accessai.core.config import Settings
from accessai.core.db import StatementSessionFactoryDep
from accessai.core.errors import UnauthorizedError
from accessai.observability.logging import bind_request_context
from accessai.users import service as users
from accessai.users.models import User


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int  # seconds


def _verification_keys(settings: Settings) -> dict[str, str]:
    keys = {settings.jwt_key_id: settings.jwt_secret.get_secret_value()}
    if settings.jwt_previous_keys is not None:
        for entry in settings.jwt_previous_keys.get_secret_value().split(","):
            kid, _, secret = entry.strip().partition(":")
            if kid and secret:
                keys.setdefault(kid, secret)
    return keys


def issue_access_token(
    settings: Settings, user: User, *, now: datetime | None = None
) -> IssuedToken:
    issued_at = now or datetime.now(UTC)
    lifetime = timedelta(minutes=settings.access_token_ttl_minutes)
    claims = {
        "sub": str(user.id),
        "email": user.email,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(
        claims,
        settings.jwt_secret.get_secret_value(),
        algorithm=settings.jwt_algorithm,
        headers={"kid": settings.jwt_key_id},
    )
    return IssuedToken(token=token, expires_in=int(lifetime.total_seconds()))


def decode_access_token(settings: Settings, token: str) -> dict[str, Any]:
    """Verified claims, or ``UnauthorizedError`` without saying which check failed."""
    try:
        header = jwt.get_unverified_header(token)
        secret = _verification_keys(settings).get(str(header.get("kid", settings.jwt_key_id)))
        if secret is None:
            raise UnauthorizedError()
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "email", "exp", "iat", "iss", "aud", "jti"]},
        )
    except jwt.PyJWTError:
        raise UnauthorizedError() from None
    return claims


async def get_settings_dependency(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dependency)]

# auto_error=False: we answer with our own error shape and WWW-Authenticate.
_bearer = HTTPBearer(auto_error=False, description="An access token or an API key.")


async def get_current_user(
    sessions: StatementSessionFactoryDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The caller, looked up outside the request's transaction.

    The lookup runs on a session of its own (one statement, no BEGIN/COMMIT
    on PostgreSQL), so a route that calls something slow holds no
    transaction open for it, and a route that needs no database needs no
    request session. The user comes back detached: read it, don't change it.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError()
    credential = credentials.credentials
    user: User | None
    async with sessions.begin() as session:
        if api_keys.looks_like_api_key(credential):
            user = await api_keys.authenticate(session, credential)
        else:
            user = await _user_from_access_token(session, settings, credential)
    if user is None:
        raise UnauthorizedError()
    bind_request_context(user_id=str(user.id))
    return user


async def _user_from_access_token(
    session: AsyncSession, settings: Settings, token: str
) -> User | None:
    claims = decode_access_token(settings, token)
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        return None
    # A deleted user's still-unexpired tokens stop working here.
    return await users.get_user(session, user_id)


CurrentUser = Annotated[User, Depends(get_current_user)]
