"""The application factory: lifespan resources, middleware, routers, error handlers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from starlette.middleware.sessions import SessionMiddleware

from accessai import __version__
from accessai.ai.engines.factory import build_engine
from accessai.ai.router import router as ai_router
from accessai.ai.service import release_stale_reservations
from accessai.auth import router as auth_router
from accessai.auth.oidc import create_oidc_client, session_middleware_options
from accessai.chat import router as chat_router
from accessai.chat.errors import OPENAI_PATH_PREFIX, render_openai_error
from accessai.chat.runtime import chat_runtime
from accessai.core.config import Settings, load_settings
from accessai.core.db import create_engine, create_sessionmaker
from accessai.core.errors import add_error_renderer, install_error_handlers
from accessai.credits.router import router as credits_router
from accessai.observability import health
from accessai.observability.logging import configure_logging, get_logger
from accessai.observability.middleware import RequestContextMiddleware
from accessai.payments import stripe_gateway
from accessai.payments.router import router as payments_router
from accessai.users import router as users_router
from accessai.web import router as web

log = get_logger("accessai")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app. ``settings`` defaults to the environment's."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.resolved_log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every resource is opened here, never at import time, and closed in
        # reverse order by the exit stack, so tests can point each elsewhere.
        async with AsyncExitStack() as resources:
            engine = create_engine(
                settings.database_url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                echo=settings.db_echo,
            )
            resources.push_async_callback(engine.dispose)
            app.state.engine = engine
            app.state.sessionmaker = create_sessionmaker(engine)
            app.state.started_at = time.monotonic()
            app.state.oidc = create_oidc_client(settings)  # None when sign-in is not configured
            ai_engine = build_engine(settings)
            resources.push_async_callback(ai_engine.aclose)
            app.state.ai_engine = ai_engine
            # stripe.StripeClient when STRIPE_SECRET_KEY is set, else None.
            app.state.stripe_client = await resources.enter_async_context(
                stripe_gateway.open_client(settings)
            )
            app.state.chat = await resources.enter_async_context(
                chat_runtime(settings, app.state.sessionmaker)
            )
            await _sweep_reservations(app, settings)
            log.info(
                "app.started",
                environment=settings.environment,
                version=__version__,
                ai_engine=ai_engine.name,
            )
            yield
        log.info("app.stopped")

    app = FastAPI(
        title="AccessAI",
        version=__version__,
        summary="AI features sold on prepaid credits.",
        lifespan=lifespan,
    )
    app.state.settings = settings

    install_error_handlers(app)
    add_error_renderer(app, OPENAI_PATH_PREFIX, render_openai_error)
    app.include_router(health.router)
    app.include_router(auth_router.router)
    app.include_router(users_router.router)
    app.include_router(credits_router)
    app.include_router(payments_router)
    app.include_router(ai_router)
    app.include_router(chat_router.router)
    web.install(app)

    # The signed cookie that carries OAuth state through the identity provider (path /auth).
    app.add_middleware(SessionMiddleware, **session_middleware_options(settings))

    # Added last = outermost: every request, even a failing one, gets an id and a log line.
    app.add_middleware(RequestContextMiddleware)
    return app


async def _sweep_reservations(app: FastAPI, settings: Settings) -> None:
    """Refund AI reservations left pending by a process that died mid-request."""
    try:
        await release_stale_reservations(
            app.state.sessionmaker,
            older_than=timedelta(minutes=settings.ai_stale_reservation_minutes),
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )
    except SQLAlchemyError as error:
        # Not fatal: the schema may not be migrated yet (production migrates
        # as its own step); the next start sweeps again.
        log.warning("ai.sweep_skipped", error=repr(error))
