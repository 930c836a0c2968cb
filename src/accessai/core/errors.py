"""One error shape for the whole API.

Every expected failure is an ``AppError``; one handler renders it as
``{"error": code, "message": ..., **extra}``. Anything else is a bug: it is
logged (and sent to Sentry) and the client gets a generic 500 with the
request id, never a stack trace.
"""

from __future__ import annotations

from typing import Any, ClassVar


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
