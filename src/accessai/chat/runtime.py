"""Chat's long-lived resources: the provider client, the tokenizer and the hold sweep.

Entered from the app's lifespan. The sweep releases holds that crashed
processes left open: once at start-up, then every
CHAT_SWEEP_INTERVAL_SECONDS until shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accessai.chat import holds
from accessai.chat.service import ChatService
from accessai.chat.tokenizer import Tokenizer, load_tokenizer
from accessai.core.config import Settings
from accessai.core.periodic import every

if TYPE_CHECKING:
    from accessai.chat.provider import ChatProvider
from accessai.observability.logging import get_logger

log = get_logger("accessai.chat")


@asynccontextmanager
async def chat_runtime(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    statements: async_sessionmaker[AsyncSession] | None = None,
) -> AsyncIterator[ChatService]:
    provider: ChatProvider | None = None
    tokenizer: Tokenizer | None = None
    if settings.chat_configured:
        from accessai.chat.provider import ChatProvider  # the openai SDK: only when needed

        provider = ChatProvider.from_settings(settings)
        tokenizer = await anyio.to_thread.run_sync(load_tokenizer)
    service = ChatService(
        settings=settings,
        sessionmaker=sessionmaker,
        statements=statements,
        provider=provider,
        tokenizer=tokenizer,
    )
    log.info("chat.ready", configured=provider is not None, models=len(settings.chat_models))
    try:
        async with every(
            settings.chat_sweep_interval_seconds,
            lambda: release_stale_holds(sessionmaker, settings),
            name="chat-hold-sweep",
        ):
            yield service
    finally:
        if provider is not None:
            await provider.aclose()


async def release_stale_holds(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """One sweep; a failure is logged by ``every`` and the next sweep retries."""
    released = await holds.release_stale_holds(
        sessionmaker, older_than=timedelta(seconds=settings.chat_hold_timeout_seconds)
    )
    if released:
        log.warning("chat.sweep_released", holds=released)
