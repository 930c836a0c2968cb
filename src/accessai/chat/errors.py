"""Errors of the OpenAI-compatible API, in OpenAI's shape.

Clients of ``/v1/*`` are OpenAI SDKs, which read
``{"error": {"message", "type", "param", "code"}}``. Every error under
``/v1/`` is rendered that way (``code`` is our usual error code); the 402
keeps ``balance`` and ``required`` inside the error object, where the SDK
exposes them as ``exc.body["balance"]``. Request validation errors are 400,
as OpenAI's are, naming the offending parameter in ``param``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from accessai.core.errors import AppError, ServiceUnavailableError, describe_validation_error
from accessai.credits.service import InsufficientCreditsError

OPENAI_PATH_PREFIX = "/v1/"

# OpenAI's error "type" per status; codes stay ours (insufficient_credits...).
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_credits",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_RESERVED = {"message", "type", "param", "code"}


class ChatNotConfiguredError(ServiceUnavailableError):
    code = "chat_not_configured"

    def __init__(self) -> None:
        super().__init__(
            "Chat is not configured on this server. Its operator must set OPENAI_API_KEY "
            "(and OPENAI_BASE_URL for a provider other than OpenAI, e.g. a vLLM, Ollama or "
            "OpenRouter endpoint) and restart AccessAI.",
            # Retrying cannot help; tell the SDKs not to.
            headers={"x-should-retry": "false"},
        )


def error_body(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": param,
        "code": code,
    }
    error.update({k: v for k, v in (extra or {}).items() if k not in _RESERVED})
    return {"error": error}


def app_error_body(exc: AppError) -> dict[str, Any]:
    extra = dict(exc.extra)
    if isinstance(exc, InsufficientCreditsError):
        extra.update(balance=exc.balance, required=exc.required)
    return error_body(exc.status_code, exc.code, exc.message, extra=extra)


async def render_openai_error(_request: Request, exc: Exception) -> Response:
    """The error renderer for ``/v1/`` (installed with ``add_error_renderer``)."""
    if isinstance(exc, AppError):
        return JSONResponse(app_error_body(exc), status_code=exc.status_code, headers=exc.headers)
    if isinstance(exc, RequestValidationError):
        return JSONResponse(_validation_body(exc), status_code=400)
    if isinstance(exc, StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else f"HTTP {exc.status_code}."
        code = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse(
            error_body(exc.status_code, code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
    raise exc  # not an expected error: the request middleware's generic 500


def _validation_body(exc: RequestValidationError) -> dict[str, Any]:
    errors = [dict(error) for error in exc.errors()]
    if not errors:
        return error_body(400, "invalid_value", "Invalid request.")
    first = errors[0]
    described = describe_validation_error(first)
    param = described["field"]
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return error_body(400, "invalid_json", "We could not parse the JSON body of your request.")
    if kind == "extra_forbidden":
        message = f"Unsupported parameter: '{param}' is not supported by this server."
        code = "unsupported_parameter"
    elif kind == "missing":
        message = f"Missing required parameter: '{param}'."
        code = "missing_required_parameter"
    else:
        message = f"Invalid value for '{param}': {described['message']}"
        code = "invalid_value"
    if len(errors) > 1:
        message += f" ({len(errors) - 1} more problem(s) in the request.)"
    return error_body(400, code, message, param=param)
