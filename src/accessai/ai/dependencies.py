"""Dependencies of the AI routes: the engine, the service, and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from accessai.ai.engines.base import AIEngine
from accessai.ai.service import AIService
from accessai.core.db import SessionDep, SessionFactoryDep
from accessai.core.security import CurrentUser, SettingsDep
from accessai.users.models import User


def get_ai_engine(request: Request) -> AIEngine:
    """The engine built in the app's lifespan (``AI_ENGINE``)."""
    engine: AIEngine = request.app.state.ai_engine
    return engine


AIEngineDep = Annotated[AIEngine, Depends(get_ai_engine)]


def get_ai_service(
    request: Request, sessions: SessionFactoryDep, engine: AIEngineDep, settings: SettingsDep
) -> AIService:
    return AIService(
        sessions, engine, settings, request_id=getattr(request.state, "request_id", None)
    )


AIServiceDep = Annotated[AIService, Depends(get_ai_service)]


async def get_ai_user(user: CurrentUser, session: SessionDep) -> User:
    """The authenticated caller, with the request's own transaction already ended.

    Authentication reads (and may write) through the request's session; the
    AI flow then runs its own short transactions around a slow engine call.
    Committing here releases the request's connection and, on SQLite, the
    database write lock that every transaction takes (``BEGIN IMMEDIATE``),
    which the flow's own transactions would otherwise wait for.
    """
    await session.commit()
    return user


AIUser = Annotated[User, Depends(get_ai_user)]
