"""Personal API keys: create, list, revoke, and authenticate a request with one.

A key is ``aai_`` plus 32 random bytes (base64url). Having that much entropy,
it needs no slow password hash: the database keeps its SHA-256, which is
enough to look it up and useless to anyone who reads the table. The full key
is shown once, when it is created.

Every query here is scoped by ``user_id``, so one user can never see or
revoke another's keys: a key id that is not the caller's is simply not found.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.auth.models import ApiKey
from accessai.core.db import utcnow
from accessai.core.errors import ConflictError, NotFoundError
from accessai.users.models import User

KEY_PREFIX = "aai_"
_SECRET_BYTES = 32
_DISPLAY_LENGTH = len(KEY_PREFIX) + 8
# Longest key we bother hashing: a real one is 47 characters.
_MAX_KEY_LENGTH = 128
MAX_KEYS_PER_USER = 50
# last_used_at is written at most once a minute per key: exact to the minute
# is enough to spot an unused key, and it spares a row write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TooManyApiKeysError(ConflictError):
    code = "too_many_api_keys"


class ApiKeyNotFoundError(NotFoundError):
    code = "api_key_not_found"

    def __init__(self) -> None:
        super().__init__("No such API key.")


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    record: ApiKey
    key: str  # the only time the full key exists outside the caller's hands


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)


async def create_api_key(session: AsyncSession, user_id: uuid.UUID, name: str) -> CreatedApiKey:
    count = await session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id)
    )
    if (count or 0) >= MAX_KEYS_PER_USER:
        raise TooManyApiKeysError(
            f"A user may hold at most {MAX_KEYS_PER_USER} API keys; revoke one first."
        )
    key = KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
    record = ApiKey(
        id=uuid.uuid4(),
        user_id=user_id,
        name=name,
        prefix=key[:_DISPLAY_LENGTH],
        key_hash=hash_key(key),
        created_at=utcnow(),
    )
    session.add(record)
    await session.flush()
    return CreatedApiKey(record=record, key=key)


async def list_api_keys(session: AsyncSession, user_id: uuid.UUID) -> list[ApiKey]:
    query = (
        select(ApiKey)
        .where(ApiKey.user_id == user_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return list(await session.scalars(query))


async def revoke_api_key(session: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Delete the caller's key; another user's key id is reported as not found."""
    result = await session.execute(
        delete(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
    )
    if getattr(result, "rowcount", 0) == 0:
        raise ApiKeyNotFoundError()


async def authenticate(
    session: AsyncSession, key: str, *, now: datetime | None = None
) -> User | None:
    """The owner of ``key``, or None. Records the use, at most once a minute."""
    if len(key) > _MAX_KEY_LENGTH:
        return None
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == hash_key(key))
        )
    ).first()
    if row is None:
        return None
    api_key, user = row
    now = now or utcnow()
    stale_before = now - LAST_USED_RESOLUTION
    if api_key.last_used_at is None or api_key.last_used_at < stale_before:
        # Conditional, so concurrent requests with one key write it once.
        await session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == api_key.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale_before),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return user
