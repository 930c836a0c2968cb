"""Dependencies of the AI routes: the engine, the service, and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from accessai.ai.engines.base import AIEngine
from accessai.ai.service import AIService
from accessai.core.db import SessionFactoryDep
from accessai.core.security import SettingsDep
from accessai.observability.middleware import current_request_id


async def get_ai_engine(request: Request) -> AIEngine:
    """The engine built in the app's lifespan (``AI_ENGINE``)."""
    engine: AIEngine = request.app.state.ai_engine
    return engine


AIEngineDep = Annotated[AIEngine, Depends(get_ai_engine)]


async def get_ai_service(
    request: Request, sessions: SessionFactoryDep, engine: AIEngineDep, settings: SettingsDep
) -> AIService:
    return AIService(
        sessions,
        engine,
        settings,
        statements=request.app.state.statement_sessionmaker,
        request_id=current_request_id(request.scope),
    )


AIServiceDep = Annotated[AIService, Depends(get_ai_service)]
