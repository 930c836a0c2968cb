"""`accessai payments replay EVENT_FILE`: a saved event through the webhook's code path."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner, Result

from accessai.cli import app as cli
from accessai.core.config import Settings
from tests.factories import create_user
from tests.payments.conftest import account, start_checkout
from tests.support.stripe_standin import StripeStandin

if TYPE_CHECKING:
    from tests.conftest import TestDatabase


async def _replay(db: TestDatabase, path: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("LOG_FORMAT", "json")
    # The CLI runs its own event loop (asyncio.run): give it a thread of its own.
    return await asyncio.to_thread(CliRunner().invoke, cli, ["payments", "replay", str(path)])


def _printed(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if not line.startswith("{")]


async def test_replay_applies_a_saved_event_once(
    app: FastAPI,
    db: TestDatabase,
    http: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    stripe_standin: StripeStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await create_user(session, credits=0)
    session_id = await start_checkout(http, settings, user)
    # Stripe gave up delivering it (say the app was down): an operator saved it.
    event = await stripe_standin.complete_session(session_id, deliver=False)
    saved = tmp_path / "event.json"
    saved.write_bytes(event.payload)

    first = await _replay(db, saved, monkeypatch)
    assert first.exit_code == 0, first.output
    assert _printed(first)[-1].startswith(f"{event.id} checkout.session.completed: credited (+200")
    assert await account(app, user.id) == (200, 0)

    second = await _replay(db, saved, monkeypatch)
    assert second.exit_code == 0, second.output
    assert _printed(second)[-1] == f"{event.id} checkout.session.completed: duplicate"
    assert await account(app, user.id) == (200, 0)

    # Stripe's own delivery, arriving after all, is a duplicate too.
    [delivery] = await stripe_standin.deliver(event)
    assert delivery.status == 200
    assert '"duplicate"' in delivery.body
    assert await account(app, user.id) == (200, 0)


async def test_replay_refuses_a_file_that_is_not_an_event(
    db: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = tmp_path / "not-an-event.json"
    saved.write_text('{"hello": "world"}')
    result = await _replay(db, saved, monkeypatch)
    assert result.exit_code == 2
    assert "not a Stripe event" in result.stderr
