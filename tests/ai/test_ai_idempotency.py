"""Idempotency-Key: replay, conflict, expiry, and concurrent submits charging once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.ai import idempotency
from accessai.ai.engines.base import EngineUnavailableError
from accessai.ai.models import IdempotencyKey
from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker, utcnow
from tests.ai.support import (
    ARTICLE,
    SHORT,
    GateEngine,
    account,
    headers_for,
    idempotency_rows,
    new_user,
    usage_rows,
)
from tests.support.databases import wait_for_lock_waiter

if TYPE_CHECKING:
    from tests.conftest import TestDatabase


async def test_a_retry_replays_the_stored_response_and_charges_nothing(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user, **{"Idempotency-Key": "order-1"})

    first = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    again = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["X-Credits-Charged"] == first.headers["X-Credits-Charged"] == "10"
    assert again.headers["X-Credits-Remaining"] == "90"
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 90
    assert len(await usage_rows(db.engine, user.id)) == 1


async def test_the_same_body_in_another_form_is_the_same_request(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    """The hash is over the validated request, not the raw bytes."""
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user, **{"Idempotency-Key": "k"})
    first = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    spaced = await client.post(
        "/api/summarize",
        content=('{ "text" :  "' + ARTICLE + '" }').encode(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert spaced.status_code == 200
    assert spaced.headers["Idempotent-Replayed"] == "true"
    assert spaced.json() == first.json()


async def test_the_same_key_with_another_body_is_a_conflict(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user, **{"Idempotency-Key": "order-2"})
    first = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    assert first.status_code == 200

    other_text = await client.post("/api/summarize", json={"text": SHORT}, headers=headers)
    other_endpoint = await client.post("/api/analyze", json={"text": ARTICLE}, headers=headers)

    for response in (other_text, other_endpoint):
        assert response.status_code == 409
        assert response.json()["error"] == "idempotency_key_reused"
    state = await account(db.engine, user.id)
    assert state.balance == 90
    assert len(await usage_rows(db.engine, user.id)) == 1


async def test_keys_belong_to_one_user(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    alice = await new_user(db.engine, credits=100)
    bob = await new_user(db.engine, credits=100)
    for user in (alice, bob):
        response = await client.post(
            "/api/summarize",
            json={"text": ARTICLE},
            headers=headers_for(settings, user, **{"Idempotency-Key": "shared"}),
        )
        assert response.status_code == 200
        assert "Idempotent-Replayed" not in response.headers
    assert (await account(db.engine, alice.id)).balance == 90
    assert (await account(db.engine, bob.id)).balance == 90


async def test_an_expired_key_can_be_reused(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user, **{"Idempotency-Key": "daily"})
    assert (
        await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    ).status_code == 200
    async with create_sessionmaker(db.engine)() as session:
        aged = utcnow() - timedelta(hours=settings.idempotency_ttl_hours, minutes=1)
        await session.execute(
            update(IdempotencyKey).where(IdempotencyKey.user_id == user.id).values(created_at=aged)
        )
        await session.commit()

    reused = await client.post("/api/analyze", json={"text": SHORT}, headers=headers)

    assert reused.status_code == 200
    assert "Idempotent-Replayed" not in reused.headers
    assert (await account(db.engine, user.id)).balance == 65
    [row] = await idempotency_rows(db.engine, user.id)
    assert row.endpoint == "analyze"


async def test_a_failed_attempt_frees_the_key(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    """Nothing was charged, so the retry with the same key is a fresh attempt."""
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user, **{"Idempotency-Key": "flaky"})
    app.state.ai_engine = GateEngine(
        gate_open=True, fail_with=EngineUnavailableError("The engine cannot be reached.")
    )
    failed = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    assert failed.status_code == 503
    assert await idempotency_rows(db.engine, user.id) == []

    app.state.ai_engine = GateEngine(gate_open=True)
    retried = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried.headers
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 90
    assert [row.outcome for row in await usage_rows(db.engine, user.id)] == [
        "engine_unavailable",
        "success",
    ]


async def test_a_refused_request_stores_nothing(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=5)
    headers = headers_for(settings, user, **{"Idempotency-Key": "broke"})
    response = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    assert response.status_code == 402
    assert await idempotency_rows(db.engine, user.id) == []


async def test_a_retry_while_the_first_runs_is_told_to_wait(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    gate = GateEngine()
    app.state.ai_engine = gate
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user, **{"Idempotency-Key": "double-click"})

    first = asyncio.create_task(
        client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    )
    await gate.entered.wait()
    second = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)

    assert second.status_code == 409
    assert second.json()["error"] == "idempotency_key_in_use"
    assert second.headers["Retry-After"] == "1"

    gate.release.set()
    done = await first
    assert done.status_code == 200
    third = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    assert third.status_code == 200
    assert third.headers["Idempotent-Replayed"] == "true"
    assert third.json() == done.json()
    assert gate.calls == 1
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 90


@pytest.mark.parametrize("submits", [6])
async def test_simultaneous_submits_run_the_engine_and_charge_once(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, db: TestDatabase, submits: int
) -> None:
    gate = GateEngine()
    app.state.ai_engine = gate
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user, **{"Idempotency-Key": "burst"})

    tasks = [
        asyncio.create_task(client.post("/api/analyze", json={"text": ARTICLE}, headers=headers))
        for _ in range(submits)
    ]
    # Exactly one request may reach the engine; the others are answered at once.
    crowded = asyncio.create_task(gate.crowded.wait())
    pending: set[asyncio.Future[object]] = {*tasks, crowded}
    while len(pending) > 2 and not crowded.done():
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    crowded.cancel()
    gate.release.set()
    responses = await asyncio.gather(*tasks)

    assert gate.calls == 1
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [409] * (submits - 1)
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"] == "idempotency_key_in_use"
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 75
    assert [row.outcome for row in await usage_rows(db.engine, user.id)] == ["success"]


async def test_an_invalid_key_is_422(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=100)
    for key in ("x" * 256, "has space"):
        response = await client.post(
            "/api/summarize",
            json={"text": ARTICLE},
            headers=headers_for(settings, user, **{"Idempotency-Key": key}),
        )
        assert response.status_code == 422
    assert (await account(db.engine, user.id)).balance == 100


async def test_the_unique_key_decides_between_concurrent_first_requests(db: TestDatabase) -> None:
    """The second claim waits for the first transaction, then loses on the unique key."""
    user = await new_user(db.engine)
    sessions = create_sessionmaker(db.engine)
    request_hash = idempotency.fingerprint("summarize", {"text": ARTICLE})

    async def claim(session: AsyncSession) -> idempotency.Claim | idempotency.StoredResponse:
        return await idempotency.claim(
            session,
            user_id=user.id,
            key="race",
            endpoint="summarize",
            request_hash=request_hash,
            ttl=timedelta(hours=24),
        )

    async def claim_in_own_transaction() -> idempotency.Claim | idempotency.StoredResponse:
        async with sessions.begin() as session:
            return await claim(session)

    async with sessions() as first:
        await first.begin()
        assert isinstance(await claim(first), idempotency.Claim)
        second = asyncio.create_task(claim_in_own_transaction())
        if db.kind == "postgresql":
            # Wait until the second insert is blocked on the first's uncommitted row.
            await wait_for_lock_waiter(
                db.engine, message="the second claim never waited for the first"
            )
        await first.commit()

    with pytest.raises(idempotency.IdempotencyKeyInUseError):
        await second
