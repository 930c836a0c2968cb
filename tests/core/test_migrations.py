"""The migrations build exactly the schema the models describe."""

import re
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, event, text

from accessai.core.db import Base
from accessai.core.migrations import upgrade_engine
from tests.support.databases import engine_for, temporary_database

# Statements that change a schema or write rows (alembic_version's included).
_CHANGES = re.compile(
    r"^\s*(CREATE|ALTER|DROP|TRUNCATE|COMMENT|RENAME|INSERT|UPDATE|DELETE)\b", re.IGNORECASE
)


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_models(database, tmp_path: Path) -> None:
    # A database of its own: the shared one may have been touched by other tests.
    async with temporary_database(database.kind, tmp_path) as url:
        engine = engine_for(url)
        try:
            await upgrade_engine(engine)
            async with engine.connect() as connection:
                differences = await connection.run_sync(_differences)
        finally:
            await engine.dispose()
    assert differences == []


async def test_upgrade_twice_is_a_no_op(database, tmp_path: Path) -> None:
    async with temporary_database(database.kind, tmp_path) as url:
        engine = engine_for(url)
        try:
            await upgrade_engine(engine)
            async with engine.connect() as connection:
                version_before = await connection.scalar(
                    text("SELECT version_num FROM alembic_version")
                )
            changes: list[str] = []

            def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
                if _CHANGES.match(statement):
                    changes.append(statement)

            event.listen(engine.sync_engine, "before_cursor_execute", record)
            try:
                await upgrade_engine(engine)
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", record)
            async with engine.connect() as connection:
                version_after = await connection.scalar(
                    text("SELECT version_num FROM alembic_version")
                )
                differences = await connection.run_sync(_differences)
        finally:
            await engine.dispose()
    assert changes == [], f"the second upgrade changed the database: {changes}"
    assert version_before is not None
    assert version_after == version_before
    assert differences == []


@pytest.mark.parametrize("revision", ["head"])
def test_single_head(revision: str) -> None:
    from alembic.script import ScriptDirectory

    from accessai.core.migrations import alembic_config

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
