"""Request context: request id, timing, one access-log line per request.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so streaming responses
pass through untouched and contextvars bound here are visible to the route.
It is also the last line of defence: an unexpected exception becomes a
generic 500 body carrying the request id, logged once with its traceback
and reported to Sentry once (when configured).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accessai.observability.logging import get_logger
from accessai.observability.sentry import capture_unexpected

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
# A client-sent id is echoed only when it is short and plain, so it cannot
# inject anything into logs or headers.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = get_logger("accessai.request")


def route_template(scope: Scope) -> str | None:
    """The matched route's path template (``/users/{id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == _REQUEST_ID_HEADER_BYTES:
            candidate: str = value.decode("latin-1")
            return candidate if _SAFE_REQUEST_ID.match(candidate) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        status_code = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_code = message["status"]
                headers = list(message.get("headers", []))
                headers.append((_REQUEST_ID_HEADER_BYTES, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            error = exc
            capture_unexpected(exc, route=route_template(scope))
            if not response_started:
                await _send_internal_error(send_with_request_id, request_id)
        finally:
            fields: dict[str, Any] = {
                "method": scope["method"],
                "route": route_template(scope),
                "path": scope["path"],
                "status": status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }
            if error is not None:
                log.error("request.failed", exc_info=error, **fields)
            else:
                log.info("request.completed", **fields)
            structlog.contextvars.clear_contextvars()


async def _send_internal_error(send: Send, request_id: str) -> None:
    body = orjson.dumps(
        {
            "error": "internal_error",
            "message": "An unexpected error occurred. Quote the request id when reporting it.",
            "request_id": request_id,
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def current_request_id(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None
