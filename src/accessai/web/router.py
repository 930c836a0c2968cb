"""Serve the dashboard: index.html at ``/`` and its assets under ``/static``.

No build step and no inline script or style, so the page runs under a strict
Content-Security-Policy (``default-src 'self'``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")
INDEX = STATIC_DIR / "index.html"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> FileResponse:
    # no-cache: the page is tiny and must pick up a new release at once.
    return FileResponse(INDEX, media_type="text/html", headers={"Cache-Control": "no-cache"})


def install(app: FastAPI) -> None:
    """Add the page route and the static assets to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
