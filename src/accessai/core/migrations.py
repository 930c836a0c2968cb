"""Apply Alembic migrations from code: the CLI, `serve` on SQLite, and the tests.

The migration scripts ship inside the package (``accessai/migrations``), so
``accessai db upgrade`` works from an installed wheel or container image,
not only from a source checkout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from accessai.core.db import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", FILE_TEMPLATE)
    if database_url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _upgrade_on(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind an existing engine (inside a running event loop)."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_on, revision)


async def _upgrade_url(database_url: str, revision: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_engine(engine, revision)
    finally:
        await engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade from synchronous code (the CLI), before any event loop runs."""
    asyncio.run(_upgrade_url(database_url, revision))
