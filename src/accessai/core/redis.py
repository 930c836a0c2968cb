"""The shared Redis client: created in the lifespan when REDIS_URL is set.

Short socket timeouts: Redis serves the rate limiter on the request path,
so an unreachable server must cost a request milliseconds, not the kernel's
connect timeout. Reach it through ``RedisDep`` (``None`` when not configured).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

CONNECT_TIMEOUT_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 1.0


def create_redis(url: str) -> Redis:
    """A client with its own connection pool; connects lazily on first use."""
    client: Redis = Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        decode_responses=False,
    )
    return client


async def get_redis(request: Request) -> Redis | None:
    client: Redis | None = getattr(request.app.state, "redis", None)
    return client


RedisDep = Annotated[Redis | None, Depends(get_redis)]
