"""Apps and database reads for tests that need more than the default `client` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from accessai.core.config import Settings
from accessai.core.db import create_sessionmaker
from accessai.main import create_app


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


def browser(app: FastAPI) -> httpx.AsyncClient:
    """A client with its own cookie jar, as a separate browser would have."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def count_rows(engine: AsyncEngine, model: Any, *where: Any) -> int:
    """Count committed rows in a short transaction of its own (SQLite locks while one is open)."""
    async with create_sessionmaker(engine)() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0
