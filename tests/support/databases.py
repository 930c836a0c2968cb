"""Throwaway databases for tests: a SQLite file or a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from accessai.core.db import Base, create_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "ACCESSAI_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("ACCESSAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def services_required() -> bool:
    """In CI the PostgreSQL and Redis runs must happen: unreachable is a failure."""
    return os.environ.get("ACCESSAI_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true"


async def postgres_available() -> bool:
    engine = create_async_engine(POSTGRES_ADMIN_URL)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


@asynccontextmanager
async def temporary_database(kind: str, directory: Path) -> AsyncIterator[str]:
    """Yield the URL of an empty database that is removed afterwards."""
    if kind == "sqlite":
        path = directory / f"accessai-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite+aiosqlite:///{path}"
        return

    name = f"accessai_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def empty_all_tables(engine: AsyncEngine) -> None:
    """Delete every row, children first, so the next test starts clean."""
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())


def engine_for(url: str) -> AsyncEngine:
    # Small on purpose: PostgreSQL's default max_connections is 100 and the
    # concurrency tests open second engines and app engines on top of this
    # one; extra tasks wait for a pooled connection instead.
    return create_engine(url, pool_size=5, max_overflow=10)


_LOCK_WAITERS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def wait_for_lock_waiter(
    source: AsyncEngine | AsyncSession,
    *,
    pid: int | None = None,
    attempts: int = 1000,
    interval: float = 0.01,
    message: str | None = None,
) -> None:
    """On PostgreSQL, poll (bounded) until a backend of this database waits for a lock.

    Only backends connected to the current database count, and only ``pid``
    when it is given. Each poll runs in a transaction of its own (a
    connection of ``source`` rolled back, or the session committed):
    PostgreSQL takes its pg_stat_activity snapshot once per transaction, so
    polling inside a single transaction would never see a backend start waiting.
    Raises AssertionError when no backend ever waits.
    """
    query = text(_LOCK_WAITERS + (" AND pid = :pid" if pid is not None else ""))
    parameters = {"pid": pid} if pid is not None else {}
    for _ in range(attempts):
        if isinstance(source, AsyncSession):
            waiting = await source.scalar(query, parameters)
            await source.commit()
        else:
            async with source.connect() as connection:
                waiting = await connection.scalar(query, parameters)
        if waiting:
            return
        await asyncio.sleep(interval)
    if message is None:
        message = (
            f"backend {pid} never waited for a lock"
            if pid is not None
            else "no backend of this database ever waited for a lock"
        )
    raise AssertionError(message)
