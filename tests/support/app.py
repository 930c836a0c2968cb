"""Run an app with its lifespan and talk to it over ASGI, for tests that need several apps.

(Over a real socket instead: ``loopback_server`` serves an app in the
test's own event loop, ``live_server`` in a thread of its own.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from accessai.core.config import Settings
from accessai.main import create_app

DEFAULT_PEER = ("127.0.0.1", 50000)


@asynccontextmanager
async def running_app(
    settings: Settings, *, peer: tuple[str, int] = DEFAULT_PEER
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app, started, and a client. ``peer`` is the address the app sees as the TCP peer."""
    application = create_app(settings)
    async with LifespanManager(application), browser(application, peer=peer) as client:
        yield application, client


def browser(app: FastAPI, *, peer: tuple[str, int] = DEFAULT_PEER) -> httpx.AsyncClient:
    """A client with its own cookie jar, as a separate browser would have."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
