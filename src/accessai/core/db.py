"""Database engine, declarative base and the request-scoped session.

The session dependency owns the transaction: it commits when the route
returns and rolls back when anything raises. Services only ``flush()``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, Select, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so Alembic can alter and drop them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_SECONDS = 30
# A pooled connection idle for longer than this is pinged before use; one
# used more recently is handed out as it is (see _ping_idle_connections).
PING_AFTER_IDLE_SECONDS = 5.0
# Server-side idle timeouts (PgBouncer, cloud proxies) are longer than this.
POOL_RECYCLE_SECONDS = 1800
_CHECKED_IN_AT = "accessai_checked_in_at"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every database.

    SQLite stores no offset, so values come back naive; this puts UTC back so
    application code compares and serialises one kind of datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def newest_first(
    session: AsyncSession,
    statement: Select[Any],
    id_column: InstrumentedAttribute[int],
    user_column: InstrumentedAttribute[uuid.UUID],
    user_id: uuid.UUID,
) -> Select[Any]:
    """One user's rows, newest first: ``WHERE user = :u ORDER BY id DESC``,
    written so that only the (user, ..., id) index can serve it.

    Written plainly, PostgreSQL may scan the primary key backwards and filter
    on the user when it believes the user owns most rows; every newer row of
    other users is then read and thrown away (2 ms instead of 0.05 ms past
    20,000 of them, and growing). As a range (``user >= :u AND user <= :u``)
    the user column stays a sort key (``ORDER BY user DESC, id DESC``) that
    the primary key cannot provide, so every user gets the same short scan
    of the composite index. Further equality filters (a reason) may follow.
    SQLite's planner has no such trap but needs the plain equality to pick
    an index with more columns (user, reason, id), so it gets that.
    """
    if session.get_bind().dialect.name != "postgresql":
        return statement.where(user_column == user_id).order_by(id_column.desc())
    return statement.where(user_column >= user_id, user_column <= user_id).order_by(
        user_column.desc(), id_column.desc()
    )


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    echo: bool = False,
    ping_after_idle_seconds: float = PING_AFTER_IDLE_SECONDS,
) -> AsyncEngine:
    """An async engine configured for the database behind ``url``."""
    if url.startswith("sqlite"):
        return _create_sqlite_engine(url, echo=echo)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=POOL_RECYCLE_SECONDS,
        echo=echo,
    )
    _ping_idle_connections(engine, ping_after_idle_seconds)
    return engine


def _ping_idle_connections(engine: AsyncEngine, after_seconds: float) -> None:
    """Ping a pooled connection before use only when it sat idle for a while.

    ``pool_pre_ping`` pings on every checkout: one extra round trip for
    every transaction, the largest single cost of a short request. A
    connection that was in use a moment ago is alive; one idle for longer
    than ``after_seconds`` may have been closed by a database
    restart or a proxy, so it is pinged, and replaced when the ping fails
    (the pool retries the checkout on ``DisconnectionError``).
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _remember_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < after_seconds:
            return  # new, or used moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"idle connection failed its ping: {error!r}") from error


def _create_sqlite_engine(url: str, *, echo: bool) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (below) instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # Take the write lock at BEGIN: a deferred transaction that later
        # upgrades to a writer fails with "database is locked" at once under
        # concurrency instead of waiting for the busy timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_statement_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for a unit of work that is one SQL statement on PostgreSQL.

    On PostgreSQL they run in AUTOCOMMIT: a single statement is atomic on
    its own, and BEGIN and COMMIT would be two more round trips. On SQLite,
    where a transaction costs no round trip, they are ordinary transactions
    (``BEGIN IMMEDIATE``), so work that takes several statements there (see
    ``credits.service.spend_with_record``) stays atomic. Never use them for
    work of several statements that must commit together on PostgreSQL.
    """
    if engine.dialect.name == "sqlite":
        return create_sessionmaker(engine)
    return create_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit on success, roll back on any error."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# scope="function": the commit runs when the route returns, before the response
# is sent, so a client never sees success for a transaction that failed to
# commit. (FastAPI's default runs yield-dependency exits after sending.)
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# The dependencies here are ``async def`` although they never await: FastAPI
# runs a plain ``def`` dependency in a worker thread, a thread hop per request.
async def get_session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    """The app's session factory, for code that runs several short transactions.

    The exception to "the request's session owns the transaction": a flow
    that must not hold a transaction across a slow call (the AI endpoints
    around an engine call, streaming bodies) opens its own with
    ``async with factory.begin() as session:``.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]


async def get_statement_session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    """The app's ``create_statement_sessionmaker``: for one-statement reads and writes."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.statement_sessionmaker
    return sessionmaker


StatementSessionFactoryDep = Annotated[
    async_sessionmaker[AsyncSession], Depends(get_statement_session_factory)
]
