"""Rate limits as FastAPI dependencies, backed by the ``limits`` library.

Use one of the ready-made dependencies on a route (or a whole router)::

    @router.post("/api/summarize", dependencies=[Depends(ai_rate_limit)])

* ``ai_rate_limit``: RATE_LIMIT_AI per signed-in user (it depends on
  ``CurrentUser``, so an anonymous call gets 401 before it is counted).
* ``auth_rate_limit``: RATE_LIMIT_AUTH per client IP, for /auth/*.
* ``public_rate_limit``: RATE_LIMIT_PUBLIC per client IP, for other
  unauthenticated routes.

or build another: ``RateLimit("scope", "settings_field")`` (per client IP)
or ``UserRateLimit("scope", "settings_field")`` (per user), where the
settings field holds a limit such as ``"20/minute"``.

Put the dependency in the decorator's ``dependencies=[...]``: FastAPI runs
those before the parameters' dependencies and before the route body, so a
refused request is never charged credits.

Algorithm: a moving window. It counts the requests of the last full window
ending now, so "20/minute" means at most 20 in any 60 seconds; a fixed
window would let 40 through around a minute boundary. Its state is one
short list per key (at most N timestamps), which is cheap at these limits.

Storage: Redis when REDIS_URL is set (every replica shares one count, via
the app's Redis connection pool), process memory otherwise.

When Redis cannot be reached the request is let through (fail open): the
limiter protects capacity and cost, while every credit check is done by the
database, so an outage of Redis must not take the paid API down. Each such
check increments ``accessai_rate_limiter_errors_total`` and logs
``ratelimit.storage_unavailable`` (at most once per 10 s per process).

Refused: 429 ``{"error": "rate_limited", "message": ..., "retry_after": N}``
with ``Retry-After: N``. Every checked response carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(Unix time in seconds when the next request is accepted again); they are
added by ``RateLimitHeadersMiddleware``, so they reach streaming and error
responses too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accessai.core.config import Settings
from accessai.core.errors import RateLimitedError
from accessai.core.security import CurrentUser
from accessai.observability.logging import get_logger
from accessai.observability.metrics import record_rate_limited, record_rate_limiter_error

STATE_KEY = "rate_limit_headers"
STORAGE_ERRORS = (StorageError, RedisError, OSError, TimeoutError)
FAILURE_LOG_INTERVAL_SECONDS = 10.0

log = get_logger("accessai.ratelimit")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # Unix time when one more request is accepted

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.reset_at - now))

    def headers(self, now: float) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after(now))
        return headers


class RateLimiter:
    """One per app (created in the lifespan): the strategy over its storage."""

    def __init__(self, storage: Storage, *, enabled: bool = True) -> None:
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)
        self.enabled = enabled
        self._parsed: dict[str, list[RateLimitItem]] = {}
        self._last_failure_log = -math.inf

    def items(self, limit: str) -> list[RateLimitItem]:
        parsed = self._parsed.get(limit)
        if parsed is None:
            parsed = self._parsed[limit] = parse_many(limit)
        return parsed

    async def hit(self, scope: str, identity: str, items: Sequence[RateLimitItem]) -> Decision:
        """Count one request against every item; the tightest item decides."""
        decision: Decision | None = None
        for item in items:
            allowed = await self.strategy.hit(item, scope, identity)
            stats = await self.strategy.get_window_stats(item, scope, identity)
            current = Decision(allowed, item.amount, stats.remaining, stats.reset_time)
            if not allowed:
                return current
            if decision is None or current.remaining < decision.remaining:
                decision = current
        assert decision is not None, "a parsed limit has at least one item"
        return decision

    def should_log_failure(self) -> bool:
        now = time.monotonic()
        if now - self._last_failure_log < FAILURE_LOG_INTERVAL_SECONDS:
            return False
        self._last_failure_log = now
        return True


def create_rate_limiter(settings: Settings, redis: Redis | None) -> RateLimiter:
    """Redis-backed when the app has a Redis client, in-memory otherwise."""
    storage: Storage
    if redis is not None and settings.redis_url is not None:
        storage = RedisStorage(
            "async+" + settings.redis_url,
            implementation="redispy",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            key_prefix=settings.rate_limit_key_prefix,
            wrap_exceptions=True,
        )
    else:
        storage = MemoryStorage()
    return RateLimiter(storage, enabled=settings.rate_limit_enabled)


def client_ip(request: Request) -> str:
    """The caller's address; X-Forwarded-For was already resolved against FORWARDED_ALLOW_IPS."""
    return request.client.host if request.client is not None else "unknown"


class _RateLimitDependency:
    """Shared by the IP and user variants; the route audit looks for this type."""

    key_kind = "ip"

    def __init__(self, scope: str, setting: str) -> None:
        if setting not in Settings.model_fields:
            raise ValueError(f"{setting!r} is not a setting")
        self.scope = scope
        self.setting = setting

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scope!r}, {self.setting!r})"

    async def enforce(self, request: Request, identity: str) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        if not limiter.enabled:
            return
        settings: Settings = request.app.state.settings
        items = limiter.items(getattr(settings, self.setting))
        try:
            decision = await limiter.hit(self.scope, identity, items)
        except STORAGE_ERRORS as error:
            record_rate_limiter_error(self.scope)
            if limiter.should_log_failure():
                log.error(
                    "ratelimit.storage_unavailable",
                    scope=self.scope,
                    error=type(error).__name__,
                    detail=str(error)[:200],
                )
            return
        now = time.time()
        current: dict[str, str] | None = getattr(request.state, STATE_KEY, None)
        # With several limits on one route, report the tightest one.
        if (
            current is None
            or not decision.allowed
            or decision.remaining < int(current["X-RateLimit-Remaining"])
        ):
            setattr(request.state, STATE_KEY, decision.headers(now))
        if not decision.allowed:
            record_rate_limited(self.scope)
            retry_after = decision.retry_after(now)
            log.info("ratelimit.refused", scope=self.scope, retry_after=retry_after)
            raise RateLimitedError(
                f"Too many requests; try again in {retry_after} seconds.",
                extra={"retry_after": retry_after},
            )


class RateLimit(_RateLimitDependency):
    """Limit per client IP."""

    async def __call__(self, request: Request) -> None:
        await self.enforce(request, client_ip(request))


class UserRateLimit(_RateLimitDependency):
    """Limit per signed-in user (requires and runs authentication)."""

    key_kind = "user"

    async def __call__(self, request: Request, user: CurrentUser) -> None:
        await self.enforce(request, str(user.id))


RateLimitDependency = _RateLimitDependency

ai_rate_limit = UserRateLimit("ai", "rate_limit_ai")
auth_rate_limit = RateLimit("auth", "rate_limit_auth")
public_rate_limit = RateLimit("public", "rate_limit_public")


class RateLimitHeadersMiddleware:
    """Adds the X-RateLimit-* (and Retry-After) headers the limiter left on the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                values: dict[str, str] | None = scope.get("state", {}).get(STATE_KEY)
                if values:
                    names = {name.lower().encode() for name in values}
                    headers = [
                        (name, value)
                        for name, value in message.get("headers", [])
                        if name.lower() not in names
                    ]
                    headers.extend(
                        (name.lower().encode(), value.encode()) for name, value in values.items()
                    )
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
