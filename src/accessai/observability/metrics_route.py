"""GET /metrics: the Prometheus text exposition, optionally behind METRICS_TOKEN.

Several worker processes: when ``PROMETHEUS_MULTIPROC_DIR`` is set (before
the process starts; ``accessai serve`` empties it at start-up), every process
writes its samples to files in that directory and this endpoint sums the
files of all workers, so whichever worker answers reports the whole server.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from starlette.responses import Response

from accessai.core.errors import UnauthorizedError
from accessai.hardening.ratelimit import public_rate_limit
from accessai.observability.metrics import METRICS_PATH
from accessai.observability.multiprocess import multiprocess_dir


def render_metrics() -> bytes:
    """The text exposition of every metric, summed over all workers in multiprocess mode."""
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


_bearer = HTTPBearer(auto_error=False)


def require_metrics_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """When METRICS_TOKEN is set, /metrics needs it as a bearer token."""
    expected = request.app.state.settings.metrics_token
    if expected is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise UnauthorizedError()


router = APIRouter(tags=["operations"])


@router.get(
    METRICS_PATH,
    include_in_schema=False,
    dependencies=[Depends(public_rate_limit), Depends(require_metrics_token)],
)
def metrics() -> Response:
    # A plain def: FastAPI runs it in the thread pool, so reading the
    # workers' files never blocks the event loop.
    return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)
