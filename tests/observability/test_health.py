"""GET /health: every configured dependency checked; any failure answers 503."""

from __future__ import annotations

import pytest

from accessai import __version__
from tests.support.app import running_app
from tests.support.network import closed_port
from tests.support.settings import make_settings


async def test_all_green_with_only_the_database_configured(client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "status": "ok",
        "database": "ok",
        "stripe": "not_configured",
        "redis": "not_configured",
        "uptime_seconds": body["uptime_seconds"],
        "version": __version__,
    }
    assert body["uptime_seconds"] >= 0
    # Each call reaches every dependency, so it is limited per client IP.
    assert response.headers["x-ratelimit-limit"] == "120"


async def test_all_green_with_redis(settings_factory, redis_ns) -> None:
    settings = settings_factory(redis_url=redis_ns.url, rate_limit_key_prefix=redis_ns.prefix)
    async with running_app(settings) as (_, client):
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["redis"] == "ok"
    assert response.json()["status"] == "ok"


async def test_redis_down_degrades(settings_factory) -> None:
    settings = settings_factory(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    async with running_app(settings) as (_, client):
        response = await client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["redis"] == "error"
    assert body["database"] == "ok"


async def test_postgresql_unreachable_degrades() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/accessai"
    async with running_app(make_settings(database_url=url)) as (_, client):
        response = await client.get("/health")
        live = await client.get("/health/live")
    assert response.status_code == 503
    assert response.json()["database"] == "error"
    assert response.json()["status"] == "degraded"
    # Liveness depends on nothing and is never rate limited.
    assert live.status_code == 200
    assert "x-ratelimit-limit" not in live.headers


async def test_sqlite_file_that_cannot_be_opened_degrades(tmp_path) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    (tmp_path / "not-a-file.db").mkdir()
    url = f"sqlite+aiosqlite:///{tmp_path / 'not-a-file.db'}"
    async with running_app(make_settings(database_url=url)) as (_, client):
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["database"] == "error"


async def test_stripe_unreachable_degrades(settings_factory) -> None:
    settings = settings_factory(
        stripe_secret_key="sk_test_health",
        stripe_api_base=f"http://127.0.0.1:{closed_port()}",
    )
    async with running_app(settings) as (_, client):
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["stripe"] == "error"
    assert response.json()["database"] == "ok"


@pytest.mark.parametrize("path", ["/health", "/health/live"])
async def test_failure_details_stay_out_of_the_response(settings_factory, path) -> None:
    port = closed_port()
    settings = settings_factory(redis_url=f"redis://127.0.0.1:{port}/0")
    async with running_app(settings) as (_, client):
        response = await client.get(path)
    assert str(port) not in response.text
    assert "Error" not in response.text


async def test_stripe_key_checked_against_the_stand_in(settings_factory, stripe_standin) -> None:
    """A real authenticated call through the official SDK (balance), to the local stand-in."""
    settings = settings_factory(
        stripe_secret_key=stripe_standin.api_key, stripe_api_base=stripe_standin.api_base
    )
    async with running_app(settings) as (_, client):
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["stripe"] == "ok"
    assert response.json()["status"] == "ok"
