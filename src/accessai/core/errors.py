"""One error shape for the whole API.

Every expected failure is an ``AppError``; one handler renders it as
``{"error": code, "message": ..., **extra}``. Anything else is a bug: it is
logged (and sent to Sentry) and the client gets a generic 500 with the
request id, never a stack trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from accessai.observability.logging import bind_request_context


class AppError(Exception):
    """An expected failure with an HTTP status and a stable machine-readable code."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class BadRequestError(AppError):
    status_code = 400
    code = "bad_request"


class UnauthorizedError(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "Missing or invalid credentials.") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(AppError):
    status_code = 403
    code = "forbidden"


class NotFoundError(AppError):
    status_code = 404
    code = "not_found"


class ConflictError(AppError):
    status_code = 409
    code = "conflict"


class ValidationError(AppError):
    status_code = 422
    code = "validation_error"


class RateLimitedError(AppError):
    status_code = 429
    code = "rate_limited"


class UpstreamError(AppError):
    """A dependency (LLM provider, Stripe, identity provider) answered badly."""

    status_code = 502
    code = "upstream_error"


class ServiceUnavailableError(AppError):
    """A feature is not configured, or a dependency cannot be reached."""

    status_code = 503
    code = "service_unavailable"


class UpstreamTimeoutError(AppError):
    status_code = 504
    code = "upstream_timeout"


# --- Rendering ---------------------------------------------------------------

ErrorRenderer = Callable[[Request, Exception], Awaitable[Response]]


def add_error_renderer(app: FastAPI, path_prefix: str, renderer: ErrorRenderer) -> None:
    """Render errors of requests under ``path_prefix`` with ``renderer`` instead.

    For API surfaces whose clients expect another shape: the OpenAI-compatible
    ``/v1/`` routes answer in OpenAI's error shape, which the official SDKs parse.
    """
    renderers: list[tuple[str, ErrorRenderer]] = getattr(app.state, "error_renderers", [])
    app.state.error_renderers = [*renderers, (path_prefix, renderer)]


def _renderer_for(request: Request) -> ErrorRenderer | None:
    for prefix, renderer in getattr(request.app.state, "error_renderers", ()):
        if request.url.path.startswith(prefix):
            return renderer  # type: ignore[no-any-return]
    return None


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


async def _app_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    # The request's log line names the error it ended with.
    bind_request_context(error_code=exc.code)
    if (renderer := _renderer_for(request)) is not None:
        return await renderer(request, exc)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    bind_request_context(error_code=code)
    if (renderer := _renderer_for(request)) is not None:
        return await renderer(request, exc)
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").capitalize()
    return JSONResponse(
        {"error": code, "message": message},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def describe_validation_error(error: dict[str, Any]) -> dict[str, str]:
    # Never echo the rejected input: it may be a secret or a huge body.
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    return {"field": ".".join(location) or "body", "message": str(error.get("msg", "invalid"))}


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    bind_request_context(error_code="validation_error")
    if (renderer := _renderer_for(request)) is not None:
        return await renderer(request, exc)
    details = [describe_validation_error(dict(error)) for error in exc.errors()]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return JSONResponse(
        {"error": "validation_error", "message": summary or "Invalid request.", "details": details},
        status_code=422,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Render every expected error in the one shape; unexpected ones are the middleware's."""
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
