"""Health endpoints: liveness for the platform, a deep check for operators.

``GET /health/live`` touches nothing and answers while the process runs.
``GET /health`` checks every configured dependency at the same time, each
with a short timeout: the database (``SELECT 1``), Redis (``PING``) and
Stripe (an authenticated balance read, which proves the key is valid). A
dependency that is not configured reports ``not_configured`` and does not
degrade the service; any failure answers 503 with ``"status": "degraded"``
so a load balancer can take the replica out. Failure details go to the log,
never to the response.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import stripe
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accessai import __version__
from accessai.core.redis import RedisDep
from accessai.hardening.ratelimit import public_rate_limit
from accessai.observability.logging import get_logger

CHECK_TIMEOUT_SECONDS = 2.0

CheckResult = Literal["ok", "error", "not_configured"]
Check = Callable[[], Awaitable[object]]

log = get_logger("accessai.health")
router = APIRouter(tags=["health"])


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    database: CheckResult
    stripe: CheckResult
    redis: CheckResult
    uptime_seconds: float
    version: str


class LivenessResponse(BaseModel):
    status: Literal["ok"]


async def run_check(name: str, check: Check | None) -> CheckResult:
    if check is None:
        return "not_configured"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await check()
    except Exception as error:  # noqa: BLE001 - any failure means unhealthy
        log.warning("health.check_failed", dependency=name, error=type(error).__name__)
        return "error"
    return "ok"


async def _select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "A dependency is failing."}},
    # Each call reaches the database, Redis and Stripe: limited per client IP.
    dependencies=[Depends(public_rate_limit)],
)
async def health(request: Request, redis: RedisDep) -> JSONResponse:
    engine: AsyncEngine = request.app.state.engine
    # Opened in the lifespan by payments.stripe_gateway; None when not configured.
    stripe_client: stripe.StripeClient | None = getattr(request.app.state, "stripe_client", None)
    database, redis_result, stripe_result = await asyncio.gather(
        run_check("database", lambda: _select_one(engine)),
        run_check("redis", redis.ping if redis is not None else None),
        run_check(
            "stripe",
            stripe_client.v1.balance.retrieve_async if stripe_client is not None else None,
        ),
    )
    results = (database, redis_result, stripe_result)
    body = HealthResponse(
        status="degraded" if "error" in results else "ok",
        database=database,
        redis=redis_result,
        stripe=stripe_result,
        uptime_seconds=round(time.monotonic() - request.app.state.started_at, 3),
        version=__version__,
    )
    return JSONResponse(body.model_dump(), status_code=503 if body.status == "degraded" else 200)


@router.get("/health/live", response_model=LivenessResponse)
async def live() -> LivenessResponse:
    """Answers without touching any dependency, for liveness probes (never rate limited)."""
    return LivenessResponse(status="ok")
