"""Idempotency-Key handling, with Stripe's semantics.

A client sends ``Idempotency-Key: <any unique string>`` with a request. The
first request with a key claims it (a row, unique per user and key) and runs;
when it succeeds its response is stored on the row. Within the key's
lifetime (``IDEMPOTENCY_TTL_HOURS``):

- the same key with the same request replays the stored response and charges
  nothing;
- the same key with a different request (another endpoint or body) is
  refused with 409 ``idempotency_key_reused``;
- the same key while the first request is still running is refused with 409
  ``idempotency_key_in_use`` and ``Retry-After``: the client retries shortly
  and then gets the stored response. (Stripe answers the same; waiting
  instead would hold a connection for up to an engine timeout.)

A request that ends in an error charged nothing (its reservation was
refunded), so the key is released rather than storing the error: a retry
with the same key is a fresh attempt. Keys older than the lifetime are free
again and are purged by the periodic sweep.

The unique (user_id, key) constraint is the arbiter: of two concurrent first
requests, one inserts the row and the other's insert fails, whatever the
timing and however many replicas run.

Functions here ``flush()`` inside the caller's transaction and never commit.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.ai.models import IdempotencyKey
from accessai.core.db import utcnow
from accessai.core.errors import ConflictError

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
# How long a client should wait before retrying a key that is still running.
RETRY_AFTER_SECONDS = 1


class IdempotencyKeyReusedError(ConflictError):
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was already used with a different request; "
            "use a new key for a new request."
        )


class IdempotencyKeyInUseError(ConflictError):
    code = "idempotency_key_in_use"

    def __init__(self) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed; "
            "retry shortly to receive its response.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The response of the request that first used a key."""

    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key: the id of its row."""

    id: int


def fingerprint(endpoint: str, payload: Any) -> str:
    """SHA-256 of the canonical request: endpoint plus the validated body as sorted JSON."""
    canonical = json.dumps(
        {"endpoint": endpoint, "body": payload},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    key: str,
    endpoint: str,
    request_hash: str,
    ttl: timedelta,
) -> Claim | StoredResponse:
    """Claim ``key`` for this request, or return the stored response to replay.

    Raises ``IdempotencyKeyReusedError`` or ``IdempotencyKeyInUseError``.
    """
    now = utcnow()
    existing = await _find(session, user_id, key)
    if existing is not None:
        stored = _judge(existing, request_hash, expired_before=now - ttl)
        if stored is not None:
            return stored
        # Expired: the key is free again.
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == existing.id))

    try:
        async with session.begin_nested():
            row_id = await session.scalar(
                insert(IdempotencyKey)
                .values(
                    user_id=user_id,
                    key=key,
                    endpoint=endpoint,
                    request_hash=request_hash,
                    status=IN_PROGRESS,
                    created_at=now,
                )
                .returning(IdempotencyKey.id)
            )
    except IntegrityError:
        # A concurrent request inserted the key first (PostgreSQL lets this
        # one wait for that transaction, then fail the unique check).
        winner = await _find(session, user_id, key)
        if winner is None:
            raise
        stored = _judge(winner, request_hash, expired_before=now - ttl)
        if stored is None:
            raise IdempotencyKeyInUseError() from None
        return stored
    assert row_id is not None
    return Claim(row_id)


async def attach_usage(session: AsyncSession, claim_: Claim, usage_id: int) -> None:
    await session.execute(
        update(IdempotencyKey).where(IdempotencyKey.id == claim_.id).values(usage_id=usage_id)
    )


async def complete(
    session: AsyncSession, claim_: Claim, status_code: int, body: dict[str, Any]
) -> None:
    """Store the response that retries with this key will receive."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim_.id)
        .values(
            status=COMPLETED,
            response_status=status_code,
            response_body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            completed_at=utcnow(),
        )
    )


async def release(session: AsyncSession, claim_: Claim) -> None:
    """Free the key after a failed attempt: nothing was charged, a retry runs afresh."""
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim_.id))


async def release_for_usage(session: AsyncSession, usage_id: int) -> None:
    """Free a key whose request died mid-flight (its reservation was refunded)."""
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.usage_id == usage_id, IdempotencyKey.status == IN_PROGRESS
        )
    )


async def purge_expired(session: AsyncSession, *, created_before: datetime) -> int:
    """Delete keys older than their lifetime; returns how many."""
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < created_before)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def _find(session: AsyncSession, user_id: uuid.UUID, key: str) -> IdempotencyKey | None:
    return await session.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
        .execution_options(populate_existing=True)
    )


def _judge(
    row: IdempotencyKey, request_hash: str, *, expired_before: datetime
) -> StoredResponse | None:
    """The stored response for a live completed key; None when the key has expired."""
    if row.created_at < expired_before:
        return None
    if row.request_hash != request_hash:
        raise IdempotencyKeyReusedError()
    if row.status != COMPLETED or row.response_body is None or row.response_status is None:
        raise IdempotencyKeyInUseError()
    body = json.loads(row.response_body)
    assert isinstance(body, dict)
    return StoredResponse(status_code=row.response_status, body=body)
