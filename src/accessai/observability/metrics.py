"""Prometheus metrics: HTTP traffic per route template, plus business events.

HTTP metrics come from prometheus-fastapi-instrumentator and are labelled by
the matched route template (``/users/{id}``), never the raw path; requests
that match no route share the handler label ``none``.

Business metrics are module-level objects behind small ``record_*``
functions so domain code never touches prometheus_client directly. Every
label value must come from a small fixed set (a route name, a package key,
a Stripe event type, an engine name): never a user id, an email or a path.

The endpoint that exposes them is observability/metrics_route.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as http_metrics

from accessai.core.errors import AppError

NAMESPACE = "accessai"
METRICS_PATH = "/metrics"

# --- HTTP ----------------------------------------------------------------------

# Built once per process: the instrumentation registers its collectors in the
# default registry, and a second registration (a second create_app() in the
# same process, as tests do) would be refused.
_http_instrumentation = http_metrics.default(
    metric_namespace=NAMESPACE,
    latency_lowr_buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# --- Business events --------------------------------------------------------------

CREDITS_SPENT = Counter(
    "credits_spent",
    "Credits charged for completed calls, by endpoint.",
    ["endpoint"],
    namespace=NAMESPACE,
)
CREDITS_PURCHASED = Counter(
    "credits_purchased",
    "Credits added by completed Stripe purchases, by package.",
    ["package"],
    namespace=NAMESPACE,
)
CREDIT_PURCHASES = Counter(
    "credit_purchases",
    "Completed Stripe purchases, by package.",
    ["package"],
    namespace=NAMESPACE,
)
INSUFFICIENT_CREDITS = Counter(
    "insufficient_credits",
    "Calls refused with 402 because the balance could not cover them, by endpoint.",
    ["endpoint"],
    namespace=NAMESPACE,
)
WEBHOOK_EVENTS = Counter(
    "webhook_events",
    "Stripe webhook events received, by event type and outcome.",
    ["type", "outcome"],
    namespace=NAMESPACE,
)
AI_ENGINE_DURATION = Histogram(
    "ai_engine_duration_seconds",
    "Time spent in the AI engine per call, by engine and operation (failures included).",
    ["engine", "operation"],
    namespace=NAMESPACE,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
)
AI_ENGINE_FAILURES = Counter(
    "ai_engine_failures",
    "AI engine calls that failed, by engine, operation and kind of failure.",
    ["engine", "operation", "kind"],
    namespace=NAMESPACE,
)
RATE_LIMITED = Counter(
    "rate_limited",
    "Requests refused with 429 by a rate limit, by limit scope.",
    ["scope"],
    namespace=NAMESPACE,
)
RATE_LIMITER_ERRORS = Counter(
    "rate_limiter_errors",
    "Rate-limit checks that could not reach their storage (Redis) and let the request through.",
    ["scope"],
    namespace=NAMESPACE,
)


def record_credits_spent(endpoint: str, credits: int) -> None:
    """A call was charged ``credits`` (after settlement, refunds excluded)."""
    CREDITS_SPENT.labels(endpoint=endpoint).inc(credits)


def record_credit_purchase(package: str, credits: int) -> None:
    """A Stripe purchase of ``package`` added ``credits`` to a balance."""
    CREDIT_PURCHASES.labels(package=package).inc()
    CREDITS_PURCHASED.labels(package=package).inc(credits)


def record_insufficient_credits(endpoint: str) -> None:
    INSUFFICIENT_CREDITS.labels(endpoint=endpoint).inc()


def record_webhook_event(event_type: str, outcome: str) -> None:
    """``outcome``: a ``payments.service.Outcome`` value, or ``invalid_signature``."""
    WEBHOOK_EVENTS.labels(type=event_type, outcome=outcome).inc()


def observe_ai_engine(engine: str, operation: str, seconds: float) -> None:
    """One engine call took ``seconds`` (for calls not timed by ``ai_engine_call``)."""
    AI_ENGINE_DURATION.labels(engine=engine, operation=operation).observe(seconds)


def record_ai_engine_failure(engine: str, operation: str, kind: str) -> None:
    AI_ENGINE_FAILURES.labels(engine=engine, operation=operation, kind=kind).inc()


def record_rate_limited(scope: str) -> None:
    RATE_LIMITED.labels(scope=scope).inc()


def record_rate_limiter_error(scope: str) -> None:
    RATE_LIMITER_ERRORS.labels(scope=scope).inc()


def failure_kind(error: BaseException) -> str:
    """A bounded label for an engine failure: the AppError code, or timeout/error."""
    if isinstance(error, AppError):
        return error.code
    if isinstance(error, TimeoutError):
        return "timeout"
    return "error"


@contextmanager
def ai_engine_call(engine: str, operation: str) -> Iterator[None]:
    """Time one engine call; a failure is counted by kind and re-raised.

    >>> with ai_engine_call("openai", "summarize"):
    ...     result = await engine.summarize(text)
    """
    started = time.perf_counter()
    try:
        yield
    except Exception as error:
        record_ai_engine_failure(engine, operation, failure_kind(error))
        raise
    finally:
        observe_ai_engine(engine, operation, time.perf_counter() - started)


def instrument(app: FastAPI) -> None:
    """Add the HTTP metrics middleware (label: route template and exact status)."""
    instrumentator = Instrumentator(
        should_group_status_codes=False,
        should_group_untemplated=True,
        excluded_handlers=[f"^{METRICS_PATH}$"],
    )
    instrumentator.add(_http_instrumentation)
    instrumentator.instrument(app)
