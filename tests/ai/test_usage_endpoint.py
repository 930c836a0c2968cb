"""GET /usage: the caller's rows, keyset pages, and totals per day and per endpoint."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import update

from accessai.ai.models import UsageRecord
from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from tests.ai.support import ARTICLE, SHORT, headers_for, new_user, usage_rows

if TYPE_CHECKING:
    from tests.conftest import TestDatabase


async def test_rows_newest_first_in_keyset_pages(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=35)
    headers = headers_for(settings, user)
    for endpoint, text in (("summarize", ARTICLE), ("analyze", SHORT), ("summarize", SHORT)):
        response = await client.post(f"/api/{endpoint}", json={"text": text}, headers=headers)
        assert response.status_code in (200, 402)
    expected = list(reversed(await usage_rows(db.engine, user.id)))
    assert [row.outcome for row in expected] == ["insufficient_credits", "success", "success"]

    seen = []
    cursor = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = await client.get("/usage", params=params, headers=headers)
        assert page.status_code == 200
        seen.extend(page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [item["id"] for item in seen] == [row.id for row in expected]
    newest = seen[0]
    assert set(newest) == {
        "id",
        "endpoint",
        "engine",
        "model",
        "input_chars",
        "prompt_tokens",
        "completion_tokens",
        "credits_charged",
        "latency_ms",
        "outcome",
        "created_at",
    }
    assert (newest["endpoint"], newest["credits_charged"]) == ("summarize", 0)
    assert seen[1]["endpoint"] == "analyze"
    assert seen[1]["credits_charged"] == 25
    assert seen[1]["input_chars"] == len(SHORT)


async def test_totals_per_day_and_endpoint_over_a_window(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine, credits=100)
    headers = headers_for(settings, user)
    for endpoint in ("summarize", "summarize", "analyze"):
        response = await client.post(f"/api/{endpoint}", json={"text": ARTICLE}, headers=headers)
        assert response.status_code == 200
    # Move the analyze row 3 days back and one summarize row out of a 7-day window.
    rows = await usage_rows(db.engine, user.id)
    now = datetime.now(UTC)
    async with create_sessionmaker(db.engine)() as session:
        for row, age in ((rows[0], timedelta(days=40)), (rows[2], timedelta(days=3))):
            await session.execute(
                update(UsageRecord).where(UsageRecord.id == row.id).values(created_at=now - age)
            )
        await session.commit()

    default = (await client.get("/usage", headers=headers)).json()["totals"]
    week = (await client.get("/usage", params={"days": 7}, headers=headers)).json()["totals"]
    wide = (await client.get("/usage", params={"days": 60}, headers=headers)).json()["totals"]

    today = now.date()
    assert default["days"] == 30
    assert (default["requests"], default["credits"]) == (2, 35)
    assert default["per_endpoint"] == [
        {"endpoint": "analyze", "requests": 1, "credits": 25},
        {"endpoint": "summarize", "requests": 1, "credits": 10},
    ]
    assert default["per_day"] == [
        {"day": (today - timedelta(days=3)).isoformat(), "requests": 1, "credits": 25},
        {"day": today.isoformat(), "requests": 1, "credits": 10},
    ]
    assert date.fromisoformat(week["since"][:10]) == today - timedelta(days=6)
    assert week["per_day"] == default["per_day"]
    assert (wide["requests"], wide["credits"]) == (3, 45)
    assert wide["per_day"][0]["day"] == (today - timedelta(days=40)).isoformat()


async def test_only_the_callers_rows(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    alice = await new_user(db.engine)
    bob = await new_user(db.engine)
    response = await client.post(
        "/api/summarize", json={"text": ARTICLE}, headers=headers_for(settings, alice)
    )
    assert response.status_code == 200
    page = (await client.get("/usage", headers=headers_for(settings, bob))).json()
    assert page["items"] == []
    assert page["next_cursor"] is None
    assert page["totals"]["requests"] == 0
    assert page["totals"]["per_day"] == []


async def test_bad_parameters_are_422(
    client: httpx.AsyncClient, settings: Settings, db: TestDatabase
) -> None:
    user = await new_user(db.engine)
    headers = headers_for(settings, user)
    for params in (
        {"cursor": "not-a-cursor"},
        {"cursor": "djE6MA"},  # v1:0
        {"limit": 0},
        {"limit": 101},
        {"days": 0},
        {"days": 367},
    ):
        response = await client.get("/usage", params=params, headers=headers)
        assert response.status_code == 422, params
        assert response.json()["error"] == "validation_error"
