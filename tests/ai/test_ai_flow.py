"""Reserve, run, settle or refund: concurrency, cancellation and the crash sweep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from accessai.ai import idempotency, usage
from accessai.ai.engines.base import EngineResponseError
from accessai.ai.engines.local import LocalEngine
from accessai.ai.models import UsageRecord
from accessai.ai.service import release_stale_reservations, reserve
from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker, utcnow
from accessai.credits import service as credits
from tests.ai.support import (
    ARTICLE,
    SHORT,
    GateEngine,
    account,
    assert_every_ledger_balances,
    headers_for,
    idempotency_rows,
    new_user,
    running,
    usage_rows,
)

if TYPE_CHECKING:
    from tests.conftest import TestDatabase


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    # Billing under concurrency is tested here, so the per-user limit
    # (RATE_LIMIT_AI, tested in tests/hardening) must not refuse first.
    return settings_factory(rate_limit_ai="1000/minute")


async def test_fifty_parallel_calls_on_a_balance_for_twenty(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=20 * settings.price_summarize)
    headers = headers_for(settings, user)

    responses = await asyncio.gather(
        *(client.post("/api/summarize", json={"text": SHORT}, headers=headers) for _ in range(50))
    )

    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 20
    assert statuses.count(402) == 30
    for response in responses:
        if response.status_code == 402:
            assert response.json() == {
                "error": "insufficient_credits",
                "balance": response.json()["balance"],
                "required": 10,
            }
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 0
    assert len(state.ledger) == 1 + 20
    await assert_every_ledger_balances(db.engine)
    outcomes = [row.outcome for row in await usage_rows(db.engine, user.id)]
    assert outcomes.count("success") == 20
    assert outcomes.count("insufficient_credits") == 30


async def test_a_user_can_run_requests_side_by_side(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    """No transaction is held while the engine runs: a second request gets through."""
    gate = GateEngine()
    app.state.ai_engine = gate
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user)
    slow = asyncio.create_task(
        client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    )
    await gate.entered.wait()

    # While the first waits inside the engine, the database is free for others.
    usage_page = await client.get("/usage", headers=headers)
    assert usage_page.status_code == 200
    assert [item["outcome"] for item in usage_page.json()["items"]] == ["pending"]
    assert (await account(db.engine, user.id)).balance == 90  # reserved

    gate.release.set()
    assert (await slow).status_code == 200


async def test_a_cancelled_request_is_refunded(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    gate = GateEngine()
    app.state.ai_engine = gate
    user = await new_user(db.engine, credits=100)
    request = asyncio.create_task(
        client.post("/api/analyze", json={"text": ARTICLE}, headers=headers_for(settings, user))
    )
    await gate.entered.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request

    rows = await wait_until_settled(db, user.id)
    assert [row.outcome for row in rows] == ["cancelled"]
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 100
    assert [row.reason for row in state.ledger] == ["signup_bonus", "analyze", "ai_refund"]


async def wait_until_settled(db: TestDatabase, user_id: object) -> list[UsageRecord]:
    """The refund of a cancelled request runs as its own task: wait for it, bounded."""
    for _ in range(500):
        rows = await usage_rows(db.engine, user_id)  # type: ignore[arg-type]
        if rows and all(row.outcome != usage.PENDING for row in rows):
            return rows
        await asyncio.sleep(0.01)
    raise AssertionError("the cancelled request was never refunded")


async def test_a_refund_after_debt_appeared_keeps_the_ledger_exact(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    """A dispute lands while the engine runs; the refund then repays debt first."""
    gate = GateEngine(fail_with=EngineResponseError("The AI engine returned garbage."))
    app.state.ai_engine = gate
    user = await new_user(db.engine, credits=10)
    request = asyncio.create_task(
        client.post("/api/summarize", json={"text": ARTICLE}, headers=headers_for(settings, user))
    )
    await gate.entered.wait()
    async with create_sessionmaker(db.engine)() as session:
        taken = await credits.take_back_credits(
            session, user.id, 30, credits.Reason.STRIPE_DISPUTE, reference="dispute:1"
        )
        await session.commit()
    assert (taken.taken, taken.shortfall) == (0, 30)
    gate.release.set()

    response = await request
    assert response.status_code == 502
    async with create_sessionmaker(db.engine)() as session:
        on_hold = await credits.get_account(session, user.id)
    assert on_hold is not None
    assert (on_hold.balance, on_hold.debt) == (0, 20)
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum
    await assert_every_ledger_balances(db.engine)


async def reserve_like_a_request_that_died(
    db: TestDatabase, user_id: object, *, age: timedelta, key: str | None = None
) -> int:
    """Step 1 of the flow, committed, with no step 3: what a crash leaves behind."""
    async with create_sessionmaker(db.engine).begin() as session:
        claim = None
        if key is not None:
            claimed = await idempotency.claim(
                session,
                user_id=user_id,  # type: ignore[arg-type]
                key=key,
                endpoint="summarize",
                request_hash=idempotency.fingerprint("summarize", {"text": ARTICLE}),
                ttl=timedelta(hours=24),
            )
            assert isinstance(claimed, idempotency.Claim)
            claim = claimed
        usage_id = await reserve(
            session,
            user_id=user_id,  # type: ignore[arg-type]
            endpoint="summarize",
            engine=LocalEngine(),
            input_chars=len(ARTICLE),
            price=10,
            request_id=None,
        )
        if claim is not None:
            await idempotency.attach_usage(session, claim, usage_id)
        await session.execute(
            update(UsageRecord).where(UsageRecord.id == usage_id).values(created_at=utcnow() - age)
        )
    return usage_id


async def test_start_up_refunds_reservations_left_by_a_crash(
    settings_factory: Callable[..., Settings], db: TestDatabase
) -> None:
    settings = settings_factory(ai_stale_reservation_minutes=15)
    user = await new_user(db.engine, credits=100)
    stale = await reserve_like_a_request_that_died(
        db, user.id, age=timedelta(minutes=16), key="crashed"
    )
    recent = await reserve_like_a_request_that_died(db, user.id, age=timedelta(minutes=1))
    assert (await account(db.engine, user.id)).balance == 80

    async with running(settings) as (_, client):
        retry = await client.post(
            "/api/summarize",
            json={"text": ARTICLE},
            headers=headers_for(settings, user, **{"Idempotency-Key": "crashed"}),
        )

    # The stale one was refunded and its key freed, so the retry ran afresh.
    assert retry.status_code == 200
    assert "Idempotent-Replayed" not in retry.headers
    rows = {row.id: row for row in await usage_rows(db.engine, user.id)}
    assert rows[stale].outcome == "abandoned"
    assert rows[stale].credits_charged == 0
    assert rows[recent].outcome == "pending"  # may still be running elsewhere
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 80
    refunds = [row for row in state.ledger if row.reason == "ai_refund"]
    assert [row.reference for row in refunds] == [f"usage:{stale}:refund"]


async def test_a_running_server_sweeps_again_at_its_interval(
    settings_factory: Callable[..., Settings], db: TestDatabase
) -> None:
    """A replica that crashes while the others keep running: its reservation is
    refunded by their periodic sweep, without waiting for any restart."""
    settings = settings_factory(ai_stale_reservation_minutes=15, ai_sweep_interval_seconds=0.05)
    user = await new_user(db.engine, credits=100)
    async with running(settings):
        # Made after start-up, so only a later sweep can refund it.
        stale = await reserve_like_a_request_that_died(db, user.id, age=timedelta(minutes=16))
        deadline = time.monotonic() + 15
        while {row.id: row for row in await usage_rows(db.engine, user.id)}[
            stale
        ].outcome == "pending":
            assert time.monotonic() < deadline, "the periodic sweep never ran"
            await asyncio.sleep(0.05)
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 100


async def test_the_sweep_refunds_once(db: TestDatabase) -> None:
    user = await new_user(db.engine, credits=100)
    await reserve_like_a_request_that_died(db, user.id, age=timedelta(hours=1))
    sessions = create_sessionmaker(db.engine)
    for expected in (1, 0):
        refunded = await release_stale_reservations(
            sessions, older_than=timedelta(minutes=15), idempotency_ttl=timedelta(hours=24)
        )
        assert refunded == expected
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 100


async def test_the_sweep_purges_expired_keys(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=100)
    response = await client.post(
        "/api/summarize",
        json={"text": ARTICLE},
        headers=headers_for(settings, user, **{"Idempotency-Key": "old"}),
    )
    assert response.status_code == 200
    sessions = create_sessionmaker(db.engine)
    await release_stale_reservations(
        sessions, older_than=timedelta(minutes=15), idempotency_ttl=timedelta(hours=24)
    )
    assert len(await idempotency_rows(db.engine, user.id)) == 1
    await release_stale_reservations(
        sessions, older_than=timedelta(minutes=15), idempotency_ttl=timedelta(0)
    )
    assert await idempotency_rows(db.engine, user.id) == []


async def test_a_request_outlived_by_the_sweep_charges_nothing(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    """If the sweep refunded a request that was in fact still running, it is not charged."""
    gate = GateEngine()
    app.state.ai_engine = gate
    user = await new_user(db.engine, credits=100)
    request = asyncio.create_task(
        client.post("/api/summarize", json={"text": ARTICLE}, headers=headers_for(settings, user))
    )
    await gate.entered.wait()
    refunded = await release_stale_reservations(
        create_sessionmaker(db.engine),
        older_than=timedelta(0),
        idempotency_ttl=timedelta(hours=24),
    )
    assert refunded == 1
    gate.release.set()

    response = await request
    assert response.status_code == 504
    assert response.json()["error"] == "engine_timeout"
    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 100
    assert [row.reason for row in state.ledger] == ["signup_bonus", "summarize", "ai_refund"]
    [row] = await usage_rows(db.engine, user.id)
    assert row.outcome == "abandoned"
