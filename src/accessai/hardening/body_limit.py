"""The largest request body we accept (MAX_REQUEST_BODY_BYTES), as one 413 shape.

A declared ``Content-Length`` above the limit is answered at once, before
any route code runs. A body without one (chunked) is counted while it
streams in: the read that crosses the limit raises ``PayloadTooLargeError``
inside the route, and the usual AppError handler renders it.

Why not FastAPI's own ``max_body_size`` (0.165): it signals with private
exceptions that travel through our middleware, so RequestContextMiddleware
logs every refusal as a crash (and would report it to Sentry), and a
declared-too-large body on a route that does not read it gets a plain-text
413 instead of our error shape.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accessai.core.errors import AppError


class PayloadTooLargeError(AppError):
    status_code = 413
    code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than {limit} bytes.", extra={"max_bytes": limit}
        )


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, send: Send) -> None:
        error = PayloadTooLargeError(self.max_bytes)
        body = orjson.dumps(error.body())
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
