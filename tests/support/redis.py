"""The test Redis: one key prefix per test, so parallel runs never share limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from tests.support.databases import REDIS_TEST_URL


@dataclass(frozen=True)
class RedisNamespace:
    url: str
    prefix: str


async def redis_available(url: str = REDIS_TEST_URL) -> bool:
    client: Redis = Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


async def delete_prefix(url: str, prefix: str) -> int:
    """Remove this test's keys only (never FLUSHDB: other runs share the database)."""
    client: Redis = Redis.from_url(url)
    deleted = 0
    try:
        async for key in client.scan_iter(match=f"{prefix}:*", count=500):
            deleted += await client.delete(key)
    finally:
        await client.aclose()
    return deleted


@asynccontextmanager
async def redis_namespace(url: str = REDIS_TEST_URL) -> AsyncIterator[RedisNamespace]:
    namespace = RedisNamespace(url=url, prefix=f"accessai-test-{uuid.uuid4().hex[:12]}")
    try:
        yield namespace
    finally:
        await delete_prefix(url, namespace.prefix)
