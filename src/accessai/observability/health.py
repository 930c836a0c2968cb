"""Health endpoints: liveness for the platform, a readiness check for operators."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]


class LivenessResponse(BaseModel):
    status: Literal["ok"]


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get("/health/live", response_model=LivenessResponse)
async def live() -> LivenessResponse:
    """Answers without touching any dependency, for liveness probes."""
    return LivenessResponse(status="ok")
