"""POST /api/summarize and /api/analyze on the default (local) engine, through HTTP."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from accessai.credits import service as credits
from tests.ai.support import (
    ARTICLE,
    POSITIVE,
    SHORT,
    account,
    headers_for,
    new_user,
    running,
    usage_rows,
)

if TYPE_CHECKING:
    from tests.conftest import TestDatabase


async def test_product_demo(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    """A new user with 100 credits spends them until the next call cannot be covered."""
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user)

    first = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["balance"] == 90
    assert first.json()["credits_charged"] == 10
    assert first.headers["X-Credits-Charged"] == "10"
    assert first.headers["X-Credits-Remaining"] == "90"

    second = await client.post("/api/analyze", json={"text": ARTICLE}, headers=headers)
    assert second.status_code == 200, second.text
    assert second.json()["balance"] == 65
    assert second.headers["X-Credits-Charged"] == "25"
    assert second.headers["X-Credits-Remaining"] == "65"

    balances = []
    while True:
        response = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
        if response.status_code != 200:
            break
        balances.append(response.json()["balance"])
        assert len(balances) < 10, "the balance never ran out"
    assert balances == [55, 45, 35, 25, 15, 5]
    assert response.status_code == 402
    assert response.json() == {"error": "insufficient_credits", "balance": 5, "required": 10}

    state = await account(db.engine, user.id)
    assert state.balance == state.ledger_sum == 5
    assert [row.reason for row in state.ledger] == ["signup_bonus", "summarize", "analyze"] + [
        "summarize"
    ] * 6
    rows = await usage_rows(db.engine, user.id)
    assert [row.outcome for row in rows] == ["success"] * 8 + ["insufficient_credits"]
    assert sum(row.credits_charged for row in rows) == 95


NINE = "123456789"
INVALID_BODIES: list[tuple[str, Any]] = [
    ("empty", {"text": ""}),
    ("nine characters", {"text": NINE}),
    ("nine after trimming", {"text": f"   {NINE}\n\t "}),
    ("2,001 characters", {"text": "a" * 2001}),
    ("whitespace only", {"text": " \n\t" * 10}),
    ("a number", {"text": 12345678901}),
    ("a list", {"text": [ARTICLE]}),
    ("null", {"text": None}),
    ("missing field", {}),
    ("unknown field", {"text": ARTICLE, "language": "en"}),
    ("not an object", [ARTICLE]),
]


@pytest.mark.parametrize("endpoint", ["/api/summarize", "/api/analyze"])
async def test_invalid_bodies_are_422_and_charge_nothing(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase, endpoint: str
) -> None:
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user)
    for case, body in INVALID_BODIES:
        response = await client.post(endpoint, json=body, headers=headers)
        assert response.status_code == 422, case
        assert response.json()["error"] == "validation_error", case
        assert response.json()["message"], case

    broken = await client.post(
        endpoint,
        content=b'{"text": "unterminated',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert broken.status_code == 422

    state = await account(db.engine, user.id)
    assert state.balance == 100
    assert len(state.ledger) == 1  # the signup bonus only
    assert await usage_rows(db.engine, user.id) == []


async def test_length_errors_say_what_is_allowed(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine)
    response = await client.post(
        "/api/summarize", json={"text": "  too short "}, headers=headers_for(settings, user)
    )
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith("text: ")
    assert "10 to 2,000 characters after trimming whitespace (got 9)" in message


async def test_length_limits_are_inclusive_and_measured_after_trimming(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user)
    ten = await client.post("/api/summarize", json={"text": "  Ten chars.\n"}, headers=headers)
    assert ten.status_code == 200, ten.text
    longest = ("Word " * 400).strip() + "."  # 2,000 characters
    assert len(longest) == 2000
    most = await client.post("/api/analyze", json={"text": f"\n {longest} \n"}, headers=headers)
    assert most.status_code == 200, most.text
    rows = await usage_rows(db.engine, user.id)
    assert [row.input_chars for row in rows] == [10, 2000]


async def test_results_are_real(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user)

    summary = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["engine"] == "local"
    assert body["model"]
    assert body["summary"].strip()
    sentences = re.split(r"(?<=\.)\s+", body["summary"])
    assert 1 <= len(sentences) < 6
    for sentence in sentences:
        assert sentence.strip()
        assert sentence in ARTICLE

    analysis = await client.post("/api/analyze", json={"text": POSITIVE}, headers=headers)
    assert analysis.status_code == 200, analysis.text
    result = analysis.json()
    assert result["sentiment"]["label"] == "positive"
    assert result["sentiment"]["score"] > 0.5
    assert result["word_count"] == len(POSITIVE.split())
    assert result["sentence_count"] == 4
    assert result["reading_time_seconds"] > 0
    assert result["keywords"]
    assert all(keyword.lower() in POSITIVE.lower() for keyword in result["keywords"])
    assert set(result) == {
        "engine",
        "model",
        "credits_charged",
        "balance",
        "word_count",
        "sentence_count",
        "reading_time_seconds",
        "sentiment",
        "keywords",
    }


async def test_usage_row_of_a_success(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine)
    response = await client.post(
        "/api/analyze",
        json={"text": f"  {SHORT}  "},
        headers=headers_for(settings, user, **{"X-Request-ID": "req-usage-1"}),
    )
    assert response.status_code == 200
    [row] = await usage_rows(db.engine, user.id)
    assert row.endpoint == "analyze"
    assert row.engine == "local"
    assert row.model == response.json()["model"]
    assert row.input_chars == len(SHORT)
    assert row.prompt_tokens is None
    assert row.completion_tokens is None
    assert row.credits_charged == 25
    assert row.latency_ms >= 0
    assert row.outcome == "success"
    assert row.request_id == "req-usage-1"
    state = await account(db.engine, user.id)
    assert state.ledger[-1].reference == f"usage:{row.id}"
    assert state.ledger[-1].amount == -25


async def test_requires_authentication(client: httpx.AsyncClient, db: TestDatabase) -> None:
    for endpoint in ("/api/summarize", "/api/analyze", "/usage"):
        if endpoint == "/usage":
            response = await client.get(endpoint)
        else:
            response = await client.post(endpoint, json={"text": ARTICLE})
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"


async def test_account_on_hold_is_refused_unchanged(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=20)
    async with create_sessionmaker(db.engine)() as session:
        await credits.take_back_credits(
            session, user.id, 50, credits.Reason.STRIPE_REFUND, reference="refund:test"
        )
        await session.commit()

    response = await client.post(
        "/api/summarize", json={"text": ARTICLE}, headers=headers_for(settings, user)
    )
    assert response.status_code == 402
    assert response.json()["error"] == "account_on_hold"
    assert response.json()["debt"] == 30
    [row] = await usage_rows(db.engine, user.id)
    assert row.outcome == "account_on_hold"
    assert row.credits_charged == 0


@pytest.mark.parametrize("prices", [{"price_summarize": 3, "price_analyze": 7}])
async def test_prices_come_from_settings(
    settings_factory: Any, db: TestDatabase, prices: dict[str, int]
) -> None:
    settings = settings_factory(**prices)
    user = await new_user(db.engine, credits=100)
    async with running(settings) as (_, client):
        headers = headers_for(settings, user)
        one = await client.post("/api/summarize", json={"text": ARTICLE}, headers=headers)
        two = await client.post("/api/analyze", json={"text": ARTICLE}, headers=headers)
    assert one.headers["X-Credits-Charged"] == "3"
    assert two.headers["X-Credits-Charged"] == "7"
    assert two.json()["balance"] == 90
