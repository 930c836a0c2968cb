"""The application factory: lifespan resources, middleware, routers, error handlers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from accessai import __version__
from accessai.auth import router as auth_router
from accessai.auth.oidc import create_oidc_client, session_middleware_options
from accessai.core.config import Settings, load_settings
from accessai.core.db import create_engine, create_sessionmaker
from accessai.core.errors import install_error_handlers
from accessai.credits.router import router as credits_router
from accessai.observability import health
from accessai.observability.logging import configure_logging, get_logger
from accessai.observability.middleware import RequestContextMiddleware
from accessai.users import router as users_router

log = get_logger("accessai")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app. ``settings`` defaults to the environment's."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.resolved_log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            echo=settings.db_echo,
        )
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.started_at = time.monotonic()
        app.state.oidc = create_oidc_client(settings)  # None when sign-in is not configured
        log.info("app.started", environment=settings.environment, version=__version__)
        try:
            yield
        finally:
            await engine.dispose()
            log.info("app.stopped")

    app = FastAPI(
        title="AccessAI",
        version=__version__,
        summary="AI features sold on prepaid credits.",
        lifespan=lifespan,
    )
    app.state.settings = settings

    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth_router.router)
    app.include_router(users_router.router)
    app.include_router(credits_router)

    # The signed cookie that carries OAuth state through the identity provider (path /auth).
    app.add_middleware(SessionMiddleware, **session_middleware_options(settings))

    # Added last = outermost: every request, even a failing one, gets an id and a log line.
    app.add_middleware(RequestContextMiddleware)
    return app
