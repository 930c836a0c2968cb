"""Run an app with its lifespan and talk to it over ASGI, for tests that need several apps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from accessai.core.config import Settings
from accessai.main import create_app


@asynccontextmanager
async def running_app(
    settings: Settings, *, peer: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """``peer`` is the address the app sees as the direct TCP peer."""
    application = create_app(settings)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield application, client
