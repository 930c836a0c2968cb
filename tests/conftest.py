"""Shared fixtures: every database-backed test runs on SQLite and on PostgreSQL.

``database`` is parametrised per session, so pytest runs the whole DB suite
once per engine; the PostgreSQL run is skipped locally when no server
answers, and fails in CI (``CI=true`` or ``ACCESSAI_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from accessai.core.migrations import upgrade_engine
from accessai.main import create_app
from tests.support.databases import (
    empty_all_tables,
    engine_for,
    postgres_available,
    services_required,
    temporary_database,
)
from tests.support.redis import RedisNamespace, redis_available, redis_namespace
from tests.support.settings import make_settings

# Test stand-ins shared by several test packages.
pytest_plugins = [
    "tests.support.openai_fixtures",
    "tests.support.stripe_standin.pytest_plugin",
]


@dataclass
class TestDatabase:
    kind: str
    url: str
    engine: AsyncEngine


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestDatabase]:
    kind: str = request.param
    if kind == "postgresql" and not await postgres_available():
        message = "PostgreSQL is not reachable (set ACCESSAI_TEST_POSTGRES_URL)"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    async with temporary_database(kind, tmp_path_factory.mktemp("db")) as url:
        engine = engine_for(url)
        await upgrade_engine(engine)
        try:
            yield TestDatabase(kind=kind, url=url, engine=engine)
        finally:
            await engine.dispose()


@pytest.fixture
async def db(database: TestDatabase) -> AsyncIterator[TestDatabase]:
    """The database for one test, emptied afterwards."""
    try:
        yield database
    finally:
        await empty_all_tables(database.engine)


@pytest.fixture
async def session(db: TestDatabase) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(db.engine)() as session:
        yield session


@pytest.fixture
def settings_factory(db: TestDatabase) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return make_settings(database_url=db.url, **overrides)

    return build


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def redis_ns() -> AsyncIterator[RedisNamespace]:
    """The test Redis with a key prefix of this test's own, removed afterwards."""
    if not await redis_available():
        message = "Redis is not reachable (set ACCESSAI_TEST_REDIS_URL)"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    async with redis_namespace() as namespace:
        yield namespace
