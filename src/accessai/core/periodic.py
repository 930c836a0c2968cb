"""Background jobs of the app's lifespan that run now and then every few seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

from accessai.observability.logging import get_logger

log = get_logger("accessai.periodic")


@asynccontextmanager
async def every(
    interval_seconds: float, job: Callable[[], Awaitable[object]], *, name: str
) -> AsyncIterator[None]:
    """Run ``job`` once now, then every ``interval_seconds`` until the block exits.

    The first run finishes before the block is entered (a start-up sweep is
    done before the app serves). A run that raises is logged and the next
    one still comes: a database that is down now may be back then.
    """
    await _run_logged(job, name)

    async def forever() -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            await _run_logged(job, name)

    task = asyncio.create_task(forever(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def _run_logged(job: Callable[[], Awaitable[object]], name: str) -> None:
    try:
        await job()
    except Exception:
        log.exception("periodic.job_failed", job=name)
