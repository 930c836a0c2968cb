"""The real AI and chat endpoints: limited per user before any charge, and counted in metrics."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from accessai.core.config import Settings
from tests.chat.conftest import MODEL, chat_settings
from tests.factories import auth_headers, create_user
from tests.support.openai_upstream import OpenAIUpstream

TEXT = "The library reopened on Monday after a long renovation. Visitors loved it."


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def settings(
    settings_factory: Callable[..., Settings], openai_upstream: OpenAIUpstream
) -> Settings:
    return chat_settings(settings_factory, openai_upstream.base_url, rate_limit_ai="3/minute")


async def test_summarize_over_the_limit_is_refused_and_not_charged(
    client, session, settings
) -> None:
    user = await create_user(session, credits=100)
    headers = auth_headers(settings, user)
    spent = sample("accessai_credits_spent_total", endpoint="summarize")
    engine_calls = sample(
        "accessai_ai_engine_duration_seconds_count", engine="local", operation="summarize"
    )

    responses = [
        await client.post("/api/summarize", json={"text": TEXT}, headers=headers) for _ in range(4)
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    refused = responses[-1]
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert "x-credits-charged" not in refused.headers  # it never reached the billing code

    balance = (await client.get("/credits/balance", headers=headers)).json()["balance"]
    assert balance == 100 - 3 * settings.price_summarize
    usage = (await client.get("/usage", headers=headers)).json()["items"]
    assert len(usage) == 3  # no usage row for the refused call

    assert sample("accessai_credits_spent_total", endpoint="summarize") == spent + 30
    assert (
        sample("accessai_ai_engine_duration_seconds_count", engine="local", operation="summarize")
        == engine_calls + 3
    )


async def test_an_unaffordable_call_is_counted_as_a_refusal(client, session, settings) -> None:
    user = await create_user(session, credits=5)
    refused = sample("accessai_insufficient_credits_total", endpoint="analyze")
    response = await client.post(
        "/api/analyze", json={"text": TEXT}, headers=auth_headers(settings, user)
    )
    assert response.status_code == 402
    assert sample("accessai_insufficient_credits_total", endpoint="analyze") == refused + 1


async def test_chat_over_the_limit_is_refused_before_any_hold(client, session, settings) -> None:
    user = await create_user(session, credits=1000)
    headers = auth_headers(settings, user)
    body = {"model": MODEL, "messages": [{"role": "user", "content": TEXT}]}
    spent = sample("accessai_credits_spent_total", endpoint="chat")

    responses = [
        await client.post("/v1/chat/completions", json=body, headers=headers) for _ in range(4)
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    charged = sum(r.json()["accessai"]["credits_charged"] for r in responses[:3])
    refused = responses[-1]
    # /v1 speaks OpenAI's error shape; the limit headers are there all the same.
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["retry-after"]) >= 1

    balance = (await client.get("/credits/balance", headers=headers)).json()["balance"]
    assert balance == 1000 - charged
    assert sample("accessai_credits_spent_total", endpoint="chat") == spent + charged
    assert (
        sample("accessai_ai_engine_duration_seconds_count", engine="openai", operation="chat") >= 3
    )
