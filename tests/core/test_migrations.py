"""The migrations build exactly the schema the models describe."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from accessai.core.db import Base
from accessai.core.migrations import upgrade_engine
from tests.support.databases import engine_for, temporary_database


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
            await upgrade_engine(engine)
        finally:
            await engine.dispose()


@pytest.mark.parametrize("revision", ["head"])
def test_single_head(revision: str) -> None:
    from alembic.script import ScriptDirectory

    from accessai.core.migrations import alembic_config

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
