"""The openai engine behind the endpoints: the real SDK against the loopback stand-in.

Every failure must refund: balance unchanged, two ledger rows for the request
(reserve and refund) and a usage row with the failure's outcome.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from accessai.core.config import Settings
from tests.ai.support import (
    ARTICLE,
    account,
    assert_every_ledger_balances,
    headers_for,
    new_user,
    running,
    usage_rows,
)
from tests.support import openai_wire as wire
from tests.support.network import free_port
from tests.support.openai_fixtures import STANDIN_API_KEY
from tests.support.openai_upstream import Behaviour, OpenAIUpstream

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import TestDatabase

MODEL = "standin-model"
ANALYSIS = {"sentiment_label": "positive", "sentiment_score": 0.5, "keywords": ["library"]}


def openai_settings(factory: Callable[..., Settings], base_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "ai_engine": "openai",
        "openai_base_url": base_url,
        "openai_api_key": STANDIN_API_KEY,
        "openai_model": MODEL,
        "openai_timeout_seconds": 10.0,
        "openai_max_retries": 0,
    }
    values.update(extra)
    return factory(**values)


@pytest.fixture
def settings(
    settings_factory: Callable[..., Settings], openai_upstream: OpenAIUpstream
) -> Settings:
    return openai_settings(settings_factory, openai_upstream.base_url)


async def test_summarize_through_the_sdk(
    client: httpx.AsyncClient,
    settings: Settings,
    db: TestDatabase,
    openai_upstream: OpenAIUpstream,
) -> None:
    openai_upstream.script(Behaviour.reply("The library reopened after a renovation."))
    user = await new_user(db.engine)

    response = await client.post(
        "/api/summarize", json={"text": ARTICLE}, headers=headers_for(settings, user)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["summary"] == "The library reopened after a renovation."
    assert body["engine"] == "openai"
    assert body["model"] == MODEL
    assert body["balance"] == 90
    sent = openai_upstream.last_request
    assert sent.bearer_token == STANDIN_API_KEY
    assert sent.json["messages"][-1] == {"role": "user", "content": ARTICLE}
    [row] = await usage_rows(db.engine, user.id)
    assert row.outcome == "success"
    assert row.engine == "openai"
    assert row.model == MODEL
    assert row.prompt_tokens == wire.count_prompt_tokens(sent.json["messages"])
    assert row.completion_tokens == wire.count_tokens("The library reopened after a renovation.")
    assert row.credits_charged == 10


async def test_analyze_through_the_sdk(
    client: httpx.AsyncClient,
    settings: Settings,
    db: TestDatabase,
    openai_upstream: OpenAIUpstream,
) -> None:
    openai_upstream.script(Behaviour.reply(json.dumps(ANALYSIS)))
    user = await new_user(db.engine)

    response = await client.post(
        "/api/analyze", json={"text": ARTICLE}, headers=headers_for(settings, user)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sentiment"] == {"label": "positive", "score": 0.5}
    assert body["keywords"] == ["library"]
    assert body["sentence_count"] == 6
    assert body["balance"] == 75


FAILURES: list[tuple[str, str, Behaviour, int, str]] = [
    ("summarize", "malformed body", Behaviour(raw_body="{not json"), 502, "engine_error"),
    (
        "analyze",
        "malformed analysis",
        Behaviour.reply("Sure! It is positive."),
        502,
        "engine_error",
    ),
    (
        "analyze",
        "analysis out of range",
        Behaviour.reply(json.dumps({**ANALYSIS, "sentiment_score": 7})),
        502,
        "engine_error",
    ),
    ("summarize", "empty reply", Behaviour.reply("   "), 502, "engine_error"),
    ("summarize", "HTTP 500", Behaviour.error(500), 502, "engine_error"),
    ("analyze", "HTTP 429", Behaviour.error(429), 502, "engine_error"),
    ("summarize", "connection dropped", Behaviour(fail_after_chunks=0), 502, "engine_error"),
]


async def assert_refunded(
    db: TestDatabase, user_id: Any, endpoint: str, outcome: str, price: int
) -> None:
    state = await account(db.engine, user_id)
    assert state.balance == state.ledger_sum == 100
    [usage] = await usage_rows(db.engine, user_id)
    assert usage.outcome == outcome
    assert usage.credits_charged == 0
    assert usage.endpoint == endpoint
    _bonus, reserve, refund = state.ledger
    assert (reserve.amount, reserve.reason, reserve.reference) == (
        -price,
        endpoint,
        f"usage:{usage.id}",
    )
    assert (refund.amount, refund.reason, refund.reference) == (
        price,
        "ai_refund",
        f"usage:{usage.id}:refund",
    )
    await assert_every_ledger_balances(db.engine)


@pytest.mark.parametrize(
    ("endpoint", "case", "behaviour", "status", "code"),
    FAILURES,
    ids=[case for _, case, *_ in FAILURES],
)
async def test_failures_refund(
    client: httpx.AsyncClient,
    settings: Settings,
    db: TestDatabase,
    openai_upstream: OpenAIUpstream,
    endpoint: str,
    case: str,
    behaviour: Behaviour,
    status: int,
    code: str,
) -> None:
    openai_upstream.script(behaviour)
    user = await new_user(db.engine)

    response = await client.post(
        f"/api/{endpoint}", json={"text": ARTICLE}, headers=headers_for(settings, user)
    )

    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["message"]
    assert response.headers["X-Credits-Charged"] == "0"
    assert response.headers["X-Credits-Remaining"] == "100"
    assert len(openai_upstream.chat_requests) == 1
    price = settings.price_summarize if endpoint == "summarize" else settings.price_analyze
    await assert_refunded(db, user.id, endpoint, code, price)


async def test_timeout_refunds(
    settings_factory: Callable[..., Settings], db: TestDatabase, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.script(Behaviour.hang(20))
    settings = openai_settings(
        settings_factory, openai_upstream.base_url, openai_timeout_seconds=0.5
    )
    user = await new_user(db.engine)
    async with running(settings) as (_, client):
        response = await client.post(
            "/api/summarize", json={"text": ARTICLE}, headers=headers_for(settings, user)
        )
    assert response.status_code == 504, response.text
    assert response.json()["error"] == "engine_timeout"
    assert response.headers["X-Credits-Remaining"] == "100"
    await assert_refunded(db, user.id, "summarize", "engine_timeout", 10)


async def test_connection_refused_refunds(
    settings_factory: Callable[..., Settings], db: TestDatabase
) -> None:
    settings = openai_settings(settings_factory, f"http://127.0.0.1:{free_port()}/v1")
    user = await new_user(db.engine)
    async with running(settings) as (_, client):
        response = await client.post(
            "/api/analyze", json={"text": ARTICLE}, headers=headers_for(settings, user)
        )
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "engine_unavailable"
    assert response.headers["X-Credits-Remaining"] == "100"
    await assert_refunded(db, user.id, "analyze", "engine_unavailable", 25)
