"""The app in this process on a throwaway PostgreSQL database, for counting and profiling.

Used by ``bench.roundtrips`` and ``bench.cpu``: unlike ``python -m bench``,
nothing runs in another process, so what is counted or timed is the app's
own work (plus httpx's, the in-process client, the same for every request).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from bench.run import ANALYZE_TEXT, REDIS_URL, create_database, drop_database, migrate

T = TypeVar("T")

# What the in-process tools call: name -> (method, path, JSON body).
CALLS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "GET /health/live": ("GET", "/health/live", None),
    "GET /me": ("GET", "/me", None),
    "GET /credits/balance": ("GET", "/credits/balance", None),
    "GET /credits/transactions": ("GET", "/credits/transactions", None),
    "POST /api/analyze": ("POST", "/api/analyze", {"text": ANALYZE_TEXT}),
}


@dataclass(frozen=True, slots=True)
class Served:
    app: FastAPI
    client: httpx.AsyncClient
    headers: dict[str, str]

    async def call(self, name: str) -> httpx.Response:
        method, path, body = CALLS[name]
        response = await self.client.request(method, path, json=body, headers=self.headers)
        response.raise_for_status()
        return response


@asynccontextmanager
async def served(url: str, **settings: Any) -> AsyncIterator[Served]:
    """The app on ``url`` (migrated), with one user who can afford any run."""
    from accessai.core.config import Settings
    from accessai.core.db import create_engine, create_sessionmaker
    from accessai.core.security import issue_access_token
    from accessai.main import create_app
    from accessai.users import service as users_service

    app_settings = Settings(
        **{
            "database_url": url,
            "redis_url": REDIS_URL,
            "rate_limit_ai": "10000000/minute",
            "log_level": "WARNING",
            **settings,
        }
    )
    engine = create_engine(url)
    async with create_sessionmaker(engine)() as session, session.begin():
        user, _ = await users_service.get_or_create_user_by_email(
            session, email="inprocess@example.test", signup_bonus=1_000_000_000
        )
        token = issue_access_token(app_settings, user).token
    await engine.dispose()

    app = create_app(app_settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield Served(app, client, {"Authorization": f"Bearer {token}"})


def on_throwaway_database(work: Callable[[str], Awaitable[T]]) -> T:
    """Create and migrate a database, run ``work(url)`` on it, drop it."""
    dsn = asyncio.run(create_database())
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        migrate(url)
        return asyncio.run(work(url))
    finally:
        asyncio.run(drop_database(dsn))
