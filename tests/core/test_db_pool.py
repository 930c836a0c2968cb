"""The pool pings a connection only after it sat idle, and replaces a dead one.

Against the real PostgreSQL server: a backend is terminated with
``pg_terminate_backend`` while its connection waits in the pool, as a
database restart or a proxy's idle timeout would do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from accessai.core.db import create_engine, create_statement_sessionmaker
from tests.conftest import TestDatabase as Database


def pool_of_one(db: Database, **options: Any) -> AsyncEngine:
    if db.kind != "postgresql":
        pytest.skip("SQLite has no server connection to lose")
    return create_engine(db.url, pool_size=1, max_overflow=0, **options)


@pytest.fixture
async def engine(db: Database) -> AsyncIterator[AsyncEngine]:
    engine = pool_of_one(db)
    yield engine
    await engine.dispose()


def count_pings(engine: AsyncEngine) -> list[int]:
    pings: list[int] = []
    dialect = engine.sync_engine.dialect
    ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT pg_backend_pid()")))


async def test_a_connection_used_moments_ago_is_not_pinged(engine: AsyncEngine) -> None:
    pings = count_pings(engine)
    first = await backend_pid(engine)
    assert await backend_pid(engine) == first
    assert pings == []


async def test_an_idle_dead_connection_is_pinged_and_replaced(db: Database) -> None:
    engine = pool_of_one(db, ping_after_idle_seconds=0.0)  # every returned connection is idle
    try:
        pings = count_pings(engine)
        lost = await backend_pid(engine)
        async with db.engine.connect() as admin:
            assert await admin.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": lost})

        # The caller never sees the dead connection: the ping fails and the pool reconnects.
        assert await backend_pid(engine) != lost
        assert pings == [1]
    finally:
        await engine.dispose()


async def test_statement_sessions_run_outside_a_transaction_block(engine: AsyncEngine) -> None:
    """AUTOCOMMIT on PostgreSQL: no BEGIN is sent, so a one-statement unit is
    one round trip (PostgreSQL refuses a savepoint outside a transaction block)."""
    async with create_statement_sessionmaker(engine).begin() as session:
        with pytest.raises(DBAPIError, match="transaction blocks"):
            await session.execute(text("SAVEPOINT probe"))
