"""The signed-in user's own record."""

from __future__ import annotations

from fastapi import APIRouter

from accessai.core.security import CurrentUser
from accessai.users.schemas import UserOut

router = APIRouter(tags=["users"])


@router.get("/me", response_model=UserOut)
async def read_me(user: CurrentUser) -> UserOut:
    """The caller's id, email, name and creation time."""
    return UserOut.model_validate(user)
