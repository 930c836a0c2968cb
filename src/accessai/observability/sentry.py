"""Error reporting to Sentry (only when SENTRY_DSN is set).

How an unexpected exception gets there exactly once: sentry-sdk's Starlette
integration wraps the whole app, but our RequestContextMiddleware catches
the exception first to render the generic 500, so Sentry's wrapper never
sees it. The middleware therefore reports it itself through
``capture_unexpected`` (a no-op without a DSN). Log records never become
events (``event_level=None``): the middleware's ``request.failed`` line would
otherwise be a second, traceback-less copy of the same error.

Every event is tagged with the request id and the route template and
carries the signed-in user's id, all read from the request's bound log
context. Expected errors (``AppError`` with a 4xx status) are dropped, and
credentials (Authorization, cookies, Stripe-Signature, API keys), request
bodies, query strings and stack-frame local variables are never sent
(breadcrumbs come from log lines, which are redacted before they exist).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.utils import event_from_exception
from starlette.exceptions import HTTPException as StarletteHTTPException

from accessai import __version__
from accessai.core.errors import AppError
from accessai.observability.logging import redact_text, request_context

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

    from accessai.core.config import Settings

# Request headers that must never leave the process, whatever the SDK's defaults.
SCRUBBED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "stripe-signature",
        "x-api-key",
        "idempotency-key",
    }
)
FILTERED = "[Filtered]"


def init_sentry(settings: Settings) -> bool:
    """Initialise the process-wide Sentry client; False when SENTRY_DSN is unset."""
    if settings.sentry_dsn is None:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.environment,
        release=f"accessai@{__version__}",
        traces_sample_rate=settings.sentry_traces_sample_rate,
        # What send_default_pii=False means, spelled out in the structured
        # option that replaces it (sentry-sdk >= 2.7x warns on the old flag):
        # no automatic user data, cookies, bodies, query strings or stack locals.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "denylist", "terms": sorted(SCRUBBED_HEADERS)}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "stack_frame_variables": False,
            "database_query_data": False,
        },
        before_send=before_send,
        integrations=[
            StarletteIntegration(transaction_style="url"),
            FastApiIntegration(transaction_style="url"),
            # Logs become breadcrumbs only; exceptions are captured explicitly.
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
    )
    return True


def capture_unexpected(error: BaseException, *, route: str | None) -> None:
    """Report an exception that no handler turned into a response."""
    client = sentry_sdk.get_client()
    if not client.is_active():
        return
    event, hint = event_from_exception(
        error,
        client_options=client.options,
        mechanism={"type": "accessai.request", "handled": False},
    )
    with sentry_sdk.new_scope() as scope:
        if route is not None:
            scope.set_tag("route", route)
        sentry_sdk.capture_event(event, hint=hint)


def is_expected(error: BaseException | None) -> bool:
    """Client errors are part of the API, not bugs."""
    if isinstance(error, AppError):
        return error.status_code < 500
    if isinstance(error, StarletteHTTPException):
        return error.status_code < 500
    return False


def before_send(event: Event, hint: Hint) -> Event | None:
    exc_info = hint.get("exc_info")
    if exc_info and is_expected(exc_info[1]):
        return None
    _add_request_context(event)
    _scrub_request(event)
    _scrub_text(event)
    return event


def _add_request_context(event: Event) -> None:
    context = request_context()
    tags: MutableMapping[str, str] = event.setdefault("tags", {})
    if "request_id" in context:
        tags.setdefault("request_id", str(context["request_id"]))
    transaction = event.get("transaction")
    if "route" not in tags and isinstance(transaction, str) and transaction.startswith("/"):
        tags["route"] = transaction
    if "user_id" in context and not event.get("user"):
        event["user"] = {"id": str(context["user_id"])}


def _scrub_request(event: Event) -> None:
    request = event.get("request")
    if not isinstance(request, dict):
        return
    headers = request.get("headers")
    if isinstance(headers, dict):
        for name in list(headers):
            if name.lower() in SCRUBBED_HEADERS:
                headers[name] = FILTERED
    for key in ("cookies", "data", "query_string"):
        request.pop(key, None)


def _redact_any(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _redact_any(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_any(item) for item in value]
    return value


def _scrub_text(event: Event) -> None:
    """Credential shapes in exception messages and breadcrumbs (other libraries' log lines)."""
    for exception in (event.get("exception") or {}).get("values") or []:
        if isinstance(exception.get("value"), str):
            exception["value"] = redact_text(exception["value"])
    breadcrumbs: Any = event.get("breadcrumbs") or {}
    values = breadcrumbs.get("values") if isinstance(breadcrumbs, dict) else breadcrumbs
    for crumb in values or []:
        for key in ("message", "data"):
            if key in crumb:
                crumb[key] = _redact_any(crumb[key])
