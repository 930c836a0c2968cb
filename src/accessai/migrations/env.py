"""Alembic environment: async engines, and connection sharing for programmatic runs."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

import accessai.models  # noqa: F401 - registers every table on Base.metadata
from accessai.core.config import get_settings
from accessai.core.db import Base, UTCDateTime, create_engine

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def _render_item(kind: str, item: Any, _context: AutogenContext) -> str | Literal[False]:
    # Our UTC wrapper is plain DateTime(timezone=True) in the database.
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        # SQLite alters tables by copying them; batch operations do that for
        # us there and are plain ALTERs on PostgreSQL.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine() -> None:
    engine = create_engine(_database_url())
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_configure)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    shared = config.attributes.get("connection")
    if shared is not None:
        _configure(shared)
    else:
        asyncio.run(_run_with_new_engine())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
