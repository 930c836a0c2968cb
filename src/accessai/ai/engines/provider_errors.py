"""What an OpenAI-compatible provider's failures become for our clients.

Shared by the AI engine for ``AI_ENGINE=openai`` and by chat: a message fit
for an API client (the provider's HTTP status at most), never the
provider's own error text, which may quote our key; that text stays out of
the logs too, which get the status, the provider's error code and type and
its request id.
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai

from accessai.ai.engines.base import (
    EngineResponseError,
    EngineTimeoutError,
    EngineUnavailableError,
)
from accessai.core.errors import AppError
from accessai.observability.logging import get_logger

log = get_logger("accessai.ai.provider")


def translate(exc: Exception, *, timeout_seconds: float, **log_fields: Any) -> AppError:
    """The client-facing error for a provider failure, before or during a stream.

    ``exc`` is what the SDK raised (or a ``ValueError`` for a body it could
    not parse); ``log_fields`` name who called (``engine=...``, ``feature=...``).
    """
    if isinstance(exc, openai.APITimeoutError):
        return EngineTimeoutError(
            f"The AI provider did not answer within {timeout_seconds:g} seconds."
        )
    if isinstance(exc, openai.APIConnectionError):
        if isinstance(exc.__cause__, httpx2.ConnectError):  # refused, DNS, unreachable
            return EngineUnavailableError("The AI provider could not be reached.")
        return EngineResponseError(
            "The connection to the AI provider broke before a complete answer."
        )
    if isinstance(exc, openai.APIStatusError):
        log.warning(
            "ai.provider_error",
            status=exc.status_code,
            error_code=exc.code,
            error_type=exc.type,
            provider_request_id=exc.request_id,
            **log_fields,
        )
        return EngineResponseError(status_message(exc.status_code))
    if isinstance(exc, openai.APIError) and not isinstance(
        exc, openai.APIResponseValidationError
    ):  # an error event inside a stream
        log.warning(
            "ai.provider_stream_error", error_code=exc.code, error_type=exc.type, **log_fields
        )
        return EngineResponseError("The AI provider reported an error mid-answer.")
    return EngineResponseError("The AI provider returned a malformed response.")


def status_message(status: int) -> str:
    if status in (401, 403):
        reason = "it refused the configured credentials"
    elif status == 429:
        reason = "it is rate limiting us or the quota is exhausted"
    elif status >= 500:
        reason = "it failed internally"
    else:
        reason = "it rejected the request"
    return f"The AI provider answered with HTTP {status}: {reason}."
