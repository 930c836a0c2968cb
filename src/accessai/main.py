"""The application factory: lifespan resources, middleware, routers, error handlers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.sessions import SessionMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

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
from accessai.core.db import create_engine, create_sessionmaker, create_statement_sessionmaker
from accessai.core.errors import add_error_renderer, install_error_handlers
from accessai.core.periodic import every
from accessai.core.redis import create_redis
from accessai.credits.router import router as credits_router
from accessai.hardening.body_limit import BodySizeLimitMiddleware
from accessai.hardening.docs import install_docs
from accessai.hardening.headers import SecurityHeadersMiddleware
from accessai.hardening.ratelimit import RateLimitHeadersMiddleware, create_rate_limiter
from accessai.observability import health, metrics, metrics_route
from accessai.observability.logging import configure_logging, get_logger
from accessai.observability.middleware import REQUEST_ID_HEADER, RequestContextMiddleware
from accessai.observability.sentry import init_sentry
from accessai.payments import stripe_gateway
from accessai.payments.router import router as payments_router
from accessai.users import router as users_router
from accessai.web import router as web

log = get_logger("accessai")

# Headers a browser on an allowed origin may send and read.
CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", REQUEST_ID_HEADER]
CORS_EXPOSE_HEADERS = [
    REQUEST_ID_HEADER,
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app. ``settings`` defaults to the environment's."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.resolved_log_format)
    init_sentry(settings)

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
            app.state.statement_sessionmaker = create_statement_sessionmaker(engine)
            app.state.started_at = time.monotonic()
            app.state.redis = None
            if settings.redis_url is not None:
                app.state.redis = create_redis(settings.redis_url)
                resources.push_async_callback(app.state.redis.aclose)
            app.state.rate_limiter = create_rate_limiter(settings, app.state.redis)
            app.state.oidc = create_oidc_client(settings)  # None when sign-in is not configured
            ai_engine = build_engine(settings)
            resources.push_async_callback(ai_engine.aclose)
            app.state.ai_engine = ai_engine
            # stripe.StripeClient when STRIPE_SECRET_KEY is set, else None.
            app.state.stripe_client = await resources.enter_async_context(
                stripe_gateway.open_client(settings)
            )
            app.state.chat = await resources.enter_async_context(
                chat_runtime(settings, app.state.sessionmaker, app.state.statement_sessionmaker)
            )
            await resources.enter_async_context(
                every(
                    settings.ai_sweep_interval_seconds,
                    lambda: _sweep_reservations(app, settings),
                    name="ai-reservation-sweep",
                )
            )
            log.info(
                "app.started",
                environment=settings.environment,
                version=__version__,
                ai_engine=ai_engine.name,
                redis=settings.redis_url is not None,
                stripe=settings.stripe_configured,
            )
            yield
        log.info("app.stopped")

    app = FastAPI(
        title="AccessAI",
        version=__version__,
        summary="AI features sold on prepaid credits.",
        lifespan=lifespan,
        docs_url=None,  # served from local assets by install_docs
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings

    install_error_handlers(app)
    add_error_renderer(app, OPENAI_PATH_PREFIX, render_openai_error)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    app.include_router(auth_router.router)
    app.include_router(users_router.router)
    app.include_router(credits_router)
    app.include_router(payments_router)
    app.include_router(ai_router)
    app.include_router(chat_router.router)
    web.install(app)

    # Middleware, outermost first (each add_middleware call below wraps the ones before it):
    #   RequestContext > ProxyHeaders > SecurityHeaders > CORS > Prometheus
    #     > BodySizeLimit > RateLimitHeaders > Session > (exception handlers, routes)
    # - Session: the signed cookie that carries OAuth state through the
    #   identity provider (path /auth); only the auth routes read it.
    # - RateLimitHeaders copies the limiter's X-RateLimit-* onto any response,
    #   including 429s rendered by the exception handlers and streams.
    # - BodySizeLimit refuses oversized bodies before routing work; metrics see the 413.
    # - Prometheus labels by route template and sees every status, 4xx included.
    # - CORS answers preflights before the routes and decorates every response.
    # - SecurityHeaders covers everything inside it (CORS preflights, 413, 429),
    #   and must see the scheme ProxyHeaders resolved (HSTS only over HTTPS).
    # - ProxyHeaders resolves client IP and scheme from X-Forwarded-* when the
    #   peer is in FORWARDED_ALLOW_IPS, before anything reads them (rate limits
    #   per IP, HSTS). It runs here rather than in uvicorn (cli.py disables
    #   uvicorn's), so tests and every server behave the same, and the headers
    #   are never applied twice.
    # - RequestContext stays outermost: every request, even one that fails in
    #   another middleware, gets an id, one log line and the generic 500.
    app.add_middleware(SessionMiddleware, **session_middleware_options(settings))
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    metrics.instrument(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,  # bearer tokens, no cookies
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
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
    except (SQLAlchemyError, OSError) as error:
        # Not fatal: the schema may not be migrated yet (production migrates
        # as its own step), or the database is unreachable for now (the app
        # must still start, so /health can say so instead of a crash loop);
        # the next sweep tries again.
        log.warning("ai.sweep_skipped", error=repr(error))
