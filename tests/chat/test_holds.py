"""Holds in the ledger: take, settle, the stale-hold sweep, and settlement under cancellation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import update

from accessai.chat import holds
from accessai.chat.models import ChatHold
from accessai.chat.schemas import ChatCompletionRequest
from accessai.chat.service import ChatService
from accessai.chat.streaming import ChatStreamResponse
from accessai.chat.tokenizer import MessageText, load_tokenizer
from accessai.core.config import Settings
from accessai.core.db import (
    create_engine,
    create_sessionmaker,
    create_statement_sessionmaker,
    utcnow,
)
from accessai.credits.service import InsufficientCreditsError
from accessai.main import create_app
from tests.chat.conftest import (
    MODEL,
    account,
    assert_ledger_invariant,
    chat_net,
    chat_settings,
    holds_of,
    usage_of,
)
from tests.factories import create_user
from tests.support.network import closed_port
from tests.support.openai_upstream import Behaviour, OpenAIUpstream

HOUR = timedelta(hours=1)


def usage_entry(outcome: str = "success") -> holds.UsageEntry:
    return holds.UsageEntry(
        model=MODEL,
        engine="openai",
        input_chars=5,
        prompt_tokens=3,
        completion_tokens=4,
        latency_ms=10,
        time_to_first_token_ms=2,
        outcome=outcome,
        request_id="req-1",
    )


@pytest.fixture
def sessionmaker(db):
    return create_sessionmaker(db.engine)


@pytest.fixture
def statements(db):
    """What the app gives take_hold: AUTOCOMMIT on PostgreSQL."""
    return create_statement_sessionmaker(db.engine)


async def backdate(sessionmaker, hold_id: uuid.UUID, by: timedelta) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(ChatHold).where(ChatHold.id == hold_id).values(created_at=utcnow() - by)
        )


async def test_take_and_settle_leave_exactly_the_charge_in_the_ledger(
    session, sessionmaker, statements, db
) -> None:
    user = await create_user(session, credits=100)

    hold = await holds.take_hold(
        statements, user_id=user.id, amount=40, model=MODEL, request_id="req-1"
    )
    assert (await account(db, user.id)).balance == 60
    [row] = await holds_of(db, user.id)
    assert (row.status, row.amount, row.charged, row.request_id) == ("held", 40, None, "req-1")

    settlement = await holds.settle_hold(sessionmaker, hold, charged=15, usage=usage_entry())

    assert settlement == holds.Settlement(charged=15, released=25, won=True)
    acct = await account(db, user.id)
    assert acct.balance == 85
    assert acct.ledger[1:] == [
        (-40, "chat_hold", f"chat:{hold.id}:hold"),
        (25, "chat_release", f"chat:{hold.id}:release"),
    ]
    [usage] = await usage_of(db, user.id)
    assert (usage.credits_charged, usage.outcome) == (15, "success")
    await assert_ledger_invariant(db)


async def test_a_full_charge_writes_no_release_row(session, sessionmaker, statements, db) -> None:
    user = await create_user(session, credits=100)
    hold = await holds.take_hold(
        statements, user_id=user.id, amount=40, model=MODEL, request_id=None
    )
    await holds.settle_hold(sessionmaker, hold, charged=40, usage=usage_entry())
    assert [r for _, r, _ in (await account(db, user.id)).ledger] == ["signup_bonus", "chat_hold"]
    await assert_ledger_invariant(db)


async def test_a_free_request_moves_no_credit(session, sessionmaker, statements, db) -> None:
    user = await create_user(session, credits=100)
    hold = await holds.take_hold(
        statements, user_id=user.id, amount=0, model=MODEL, request_id=None
    )
    await holds.settle_hold(sessionmaker, hold, charged=0, usage=usage_entry())
    assert len((await account(db, user.id)).ledger) == 1
    await assert_ledger_invariant(db)


async def test_a_hold_beyond_the_balance_changes_nothing(session, statements, db) -> None:
    user = await create_user(session, credits=10)
    with pytest.raises(InsufficientCreditsError) as caught:
        await holds.take_hold(statements, user_id=user.id, amount=11, model=MODEL, request_id=None)
    assert (caught.value.balance, caught.value.required) == (10, 11)
    assert await holds_of(db, user.id) == []
    assert (await account(db, user.id)).balance == 10


async def test_a_charge_outside_the_hold_is_a_bug(session, sessionmaker, statements) -> None:
    user = await create_user(session, credits=100)
    hold = await holds.take_hold(
        statements, user_id=user.id, amount=5, model=MODEL, request_id=None
    )
    with pytest.raises(ValueError, match="outside the hold"):
        await holds.settle_hold(sessionmaker, hold, charged=6, usage=usage_entry())


async def test_concurrent_holds_never_exceed_the_balance(session, statements, db) -> None:
    user = await create_user(session, credits=100)

    async def try_hold() -> bool:
        try:
            await holds.take_hold(
                statements, user_id=user.id, amount=30, model=MODEL, request_id=None
            )
        except InsufficientCreditsError:
            return False
        return True

    results = await asyncio.gather(*(try_hold() for _ in range(6)))

    assert results.count(True) == 3
    assert (await account(db, user.id)).balance == 10


# --- The sweep ---------------------------------------------------------------------------------


async def test_the_sweep_releases_only_stale_holds(session, sessionmaker, statements, db) -> None:
    user = await create_user(session, credits=100)
    stale = await holds.take_hold(
        statements, user_id=user.id, amount=30, model=MODEL, request_id=None
    )
    fresh = await holds.take_hold(
        statements, user_id=user.id, amount=20, model=MODEL, request_id=None
    )
    await backdate(sessionmaker, stale.id, 2 * HOUR)

    released = await holds.release_stale_holds(sessionmaker, older_than=HOUR)

    assert released == 1
    by_id = {h.id: h for h in await holds_of(db, user.id)}
    assert (by_id[stale.id].status, by_id[stale.id].charged) == ("released", None)
    assert by_id[stale.id].settled_at is not None
    assert by_id[fresh.id].status == "held"
    acct = await account(db, user.id)
    assert acct.balance == 80  # only the fresh hold is still out
    assert (30, "chat_release", f"chat:{stale.id}:release") in acct.ledger
    assert await holds.release_stale_holds(sessionmaker, older_than=HOUR) == 0  # idempotent

    await holds.settle_hold(sessionmaker, fresh, charged=5, usage=usage_entry())
    await assert_ledger_invariant(db)


async def test_a_settle_that_loses_to_the_sweep_charges_nothing_and_releases_nothing(
    session, sessionmaker, statements, db
) -> None:
    user = await create_user(session, credits=100)
    hold = await holds.take_hold(
        statements, user_id=user.id, amount=30, model=MODEL, request_id=None
    )
    await holds.release_stale_holds(sessionmaker, older_than=HOUR, now=utcnow() + 2 * HOUR)

    late = await holds.settle_hold(sessionmaker, hold, charged=12, usage=usage_entry())

    assert late == holds.Settlement(charged=0, released=0, won=False)
    acct = await account(db, user.id)
    assert acct.balance == 100
    assert [r for _, r, _ in acct.ledger].count("chat_release") == 1
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.credits_charged) == ("hold_expired", 0)
    await assert_ledger_invariant(db)


async def test_the_sweep_leaves_settled_holds_alone(session, sessionmaker, statements, db) -> None:
    user = await create_user(session, credits=100)
    hold = await holds.take_hold(
        statements, user_id=user.id, amount=30, model=MODEL, request_id=None
    )
    await holds.settle_hold(sessionmaker, hold, charged=12, usage=usage_entry())

    assert (
        await holds.release_stale_holds(sessionmaker, older_than=HOUR, now=utcnow() + 2 * HOUR) == 0
    )
    assert await chat_net(db, user.id) == 12
    await assert_ledger_invariant(db)


async def test_the_sweep_runs_at_start_up(
    settings: Settings, session, sessionmaker, statements, db
) -> None:
    user = await create_user(session, credits=100)
    hold = await holds.take_hold(
        statements, user_id=user.id, amount=30, model=MODEL, request_id=None
    )
    await backdate(sessionmaker, hold.id, timedelta(seconds=settings.chat_hold_timeout_seconds + 1))

    async with LifespanManager(create_app(settings)):
        [row] = await holds_of(db, user.id)
        assert row.status == "released"
    assert (await account(db, user.id)).balance == 100
    await assert_ledger_invariant(db)


async def test_the_sweep_runs_periodically(
    settings_factory: Callable[..., Settings],
    openai_upstream: OpenAIUpstream,
    session,
    sessionmaker,
    statements,
    db,
) -> None:
    settings = chat_settings(
        settings_factory, openai_upstream.base_url, chat_sweep_interval_seconds=0.05
    )
    user = await create_user(session, credits=100)
    async with LifespanManager(create_app(settings)):
        # Taken after start-up, so only a later sweep can release it.
        hold = await holds.take_hold(
            statements, user_id=user.id, amount=30, model=MODEL, request_id=None
        )
        await backdate(
            sessionmaker, hold.id, 2 * timedelta(seconds=settings.chat_hold_timeout_seconds)
        )
        deadline = time.monotonic() + 15
        while (await holds_of(db, user.id))[0].status == "held":
            assert time.monotonic() < deadline, "the periodic sweep never ran"
            await asyncio.sleep(0.05)
    assert (await account(db, user.id)).balance == 100
    await assert_ledger_invariant(db)


# --- Settlement survives cancellation ------------------------------------------------------------


async def test_a_stream_cancelled_from_outside_still_settles(
    app, session, db, openai_upstream: OpenAIUpstream, price
) -> None:
    """Level-triggered cancellation (an enclosing anyio scope, as middleware or a
    server shutting down would do) hits every unshielded await: only the
    shielded settlement can still write the charge."""
    user = await create_user(session, credits=1000)
    chat: ChatService = app.state.chat
    openai_upstream.script(Behaviour.reply("one two three", token_delay_seconds=20))
    request = ChatCompletionRequest.model_validate(
        {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}
    )
    plan = await chat.plan(request)
    stream = await chat.start_stream(user.id, plan, "req-cancel")

    first_content = anyio.Event()
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        body = message.get("body", b"")
        sent.append(body)
        if b'"content":"one"' in body:
            first_content.set()

    async with anyio.create_task_group() as group:
        group.start_soon(ChatStreamResponse(stream), {"type": "http"}, receive, send)
        await first_content.wait()
        group.cancel_scope.cancel()

    [row] = await holds_of(db, user.id)
    assert row.status == "settled"
    tokenizer = load_tokenizer()
    expected = price.cost(tokenizer.count_messages([MessageText(role="user", content="Hi")]), 1)
    assert row.charged == expected
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.completion_tokens) == ("cancelled", 1)
    assert openai_upstream.wait_for_requests(1)[0].outcome == "client_disconnected"
    await assert_ledger_invariant(db)


async def test_settle_failures_leave_the_hold_for_the_sweep(
    settings_factory: Callable[..., Settings], openai_upstream: OpenAIUpstream, session, db, price
) -> None:
    """If the database fails at settlement, nothing is charged twice: the hold
    stays open and the sweep releases it in full."""
    settings = chat_settings(settings_factory, openai_upstream.base_url)
    user = await create_user(session, credits=1000)
    app = create_app(settings)
    async with LifespanManager(app):
        running: ChatService = app.state.chat
        # Holds go through the app's real statement sessions; the settlement's
        # transactions go to a database server that is not there.
        gone = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/gone")
        chat = ChatService(
            settings=settings,
            sessionmaker=create_sessionmaker(gone),
            statements=app.state.statement_sessionmaker,
            provider=running.provider,
            tokenizer=running.tokenizer,
        )
        request = ChatCompletionRequest.model_validate(
            {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}
        )
        try:
            body = await chat.complete(user.id, await chat.plan(request), "req-db-down")
        finally:
            await gone.dispose()

    assert body["accessai"] == {"credits_charged": 0}
    [row] = await holds_of(db, user.id)
    assert row.status == "held"
    sessionmaker = create_sessionmaker(db.engine)
    await holds.release_stale_holds(sessionmaker, older_than=HOUR, now=utcnow() + 2 * HOUR)
    assert (await account(db, user.id)).balance == 1000
    await assert_ledger_invariant(db)
