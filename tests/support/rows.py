"""Reading committed rows directly, for tests that check what a request left behind."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from accessai.core.db import create_sessionmaker


async def count_rows(engine: AsyncEngine, model: Any, *where: Any) -> int:
    """Count committed rows in a short transaction of its own (SQLite locks while one is open)."""
    async with create_sessionmaker(engine)() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0
