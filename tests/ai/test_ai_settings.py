"""AI settings fail fast, and the lifespan builds (and closes) the configured engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from accessai.ai.engines.local import LocalEngine
from accessai.ai.engines.openai_compatible import OpenAICompatibleEngine
from accessai.core.config import ConfigError, Settings, load_settings
from tests.ai.support import running
from tests.support.openai_fixtures import STANDIN_API_KEY
from tests.support.settings import make_settings

if TYPE_CHECKING:
    from tests.support.openai_upstream import OpenAIUpstream


@pytest.mark.parametrize("key", [None, "", "   "])
def test_openai_engine_without_a_key_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path, key: str | None
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AI_ENGINE", "openai")
    if key is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY: required when AI_ENGINE=openai"):
        load_settings()


def test_local_engine_needs_no_key(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert load_settings(ai_engine="local").openai_api_key is None


def test_the_sweep_delay_must_outlast_the_slowest_engine_call() -> None:
    with pytest.raises(ValidationError, match="AI_STALE_RESERVATION_MINUTES"):
        make_settings(
            ai_stale_reservation_minutes=1, openai_timeout_seconds=30, openai_max_retries=1
        )
    make_settings(ai_stale_reservation_minutes=2, openai_timeout_seconds=30, openai_max_retries=1)


async def test_lifespan_builds_the_local_engine_by_default(settings: Settings) -> None:
    async with running(settings) as (app, _):
        assert isinstance(app.state.ai_engine, LocalEngine)


async def test_lifespan_builds_and_closes_the_openai_engine(
    settings_factory: Callable[..., Settings], openai_upstream: OpenAIUpstream
) -> None:
    settings = settings_factory(
        ai_engine="openai", openai_base_url=openai_upstream.base_url, openai_api_key=STANDIN_API_KEY
    )
    async with running(settings) as (app, _):
        engine = app.state.ai_engine
        assert isinstance(engine, OpenAICompatibleEngine)
        assert engine.model == settings.openai_model
        client = engine._client
        assert not client.is_closed()
    assert client.is_closed()
