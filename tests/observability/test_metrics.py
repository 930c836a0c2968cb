"""GET /metrics: HTTP metrics per route template, business metrics, optional token."""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY

from accessai.core.errors import UpstreamError
from accessai.observability import metrics
from tests.support.app import running_app


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def exposed_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the text exposition (labels in any order)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.rsplit("}", 1)[0]))
        if found == labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_http_metrics_are_labelled_by_route_template(app, client) -> None:
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.add_api_route("/_test/items/{item_id}", item, methods=["GET"])
    template = {"handler": "/_test/items/{item_id}", "method": "GET", "status": "200"}
    before = sample("accessai_http_requests_total", **template)
    unmatched_before = sample(
        "accessai_http_requests_total", handler="none", method="GET", status="404"
    )
    invalid_before = sample(
        "accessai_http_requests_total", handler="/_test/items/{item_id}", method="GET", status="422"
    )

    for item_id in (1, 2, 3):
        assert (await client.get(f"/_test/items/{item_id}")).status_code == 200
    assert (await client.get("/_test/items/not-a-number")).status_code == 422
    assert (await client.get("/no/such/path/12345")).status_code == 404

    text = (await client.get("/metrics")).text
    assert exposed_value(text, "accessai_http_requests_total", **template) == before + 3
    assert sample("accessai_http_requests_total", **template) == before + 3
    assert (
        sample(
            "accessai_http_requests_total",
            handler="/_test/items/{item_id}",
            method="GET",
            status="422",
        )
        == invalid_before + 1
    )
    assert (
        sample("accessai_http_requests_total", handler="none", method="GET", status="404")
        == unmatched_before + 1
    )
    # Never a raw path as a label.
    assert "/_test/items/1" not in text
    assert "/no/such/path" not in text
    # The latency histogram exists per route template.
    assert (
        sample(
            "accessai_http_request_duration_seconds_count",
            handler="/_test/items/{item_id}",
            method="GET",
        )
        >= 3
    )


async def test_metrics_scrapes_are_not_counted(client) -> None:
    await client.get("/metrics")
    text = (await client.get("/metrics")).text
    assert 'handler="/metrics"' not in text


async def test_business_metrics_after_known_events(client) -> None:
    spent = sample("accessai_credits_spent_total", endpoint="summarize")
    purchased = sample("accessai_credits_purchased_total", package="starter")
    purchases = sample("accessai_credit_purchases_total", package="starter")
    refused = sample("accessai_insufficient_credits_total", endpoint="analyze")
    webhooks = sample(
        "accessai_webhook_events_total", type="checkout.session.completed", outcome="processed"
    )

    metrics.record_credits_spent("summarize", 10)
    metrics.record_credits_spent("summarize", 10)
    metrics.record_credit_purchase("starter", 200)
    metrics.record_insufficient_credits("analyze")
    metrics.record_webhook_event("checkout.session.completed", "processed")

    text = (await client.get("/metrics")).text
    assert exposed_value(text, "accessai_credits_spent_total", endpoint="summarize") == spent + 20
    assert (
        exposed_value(text, "accessai_credits_purchased_total", package="starter")
        == purchased + 200
    )
    assert (
        exposed_value(text, "accessai_credit_purchases_total", package="starter") == purchases + 1
    )
    assert (
        exposed_value(text, "accessai_insufficient_credits_total", endpoint="analyze")
        == refused + 1
    )
    assert (
        exposed_value(
            text,
            "accessai_webhook_events_total",
            type="checkout.session.completed",
            outcome="processed",
        )
        == webhooks + 1
    )
    for name in (
        "accessai_ai_engine_duration_seconds",
        "accessai_ai_engine_failures_total",
        "accessai_rate_limited_total",
        "accessai_rate_limiter_errors_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text


def test_ai_engine_calls_are_timed_and_failures_counted_by_kind() -> None:
    labels = {"engine": "local", "operation": "summarize"}
    calls = sample("accessai_ai_engine_duration_seconds_count", **labels)
    timeouts = sample("accessai_ai_engine_failures_total", **labels, kind="timeout")
    upstream = sample("accessai_ai_engine_failures_total", **labels, kind="upstream_error")

    with metrics.ai_engine_call("local", "summarize"):
        pass
    with pytest.raises(TimeoutError), metrics.ai_engine_call("local", "summarize"):
        raise TimeoutError
    with pytest.raises(UpstreamError), metrics.ai_engine_call("local", "summarize"):
        raise UpstreamError("provider said no")

    assert sample("accessai_ai_engine_duration_seconds_count", **labels) == calls + 3
    assert sample("accessai_ai_engine_failures_total", **labels, kind="timeout") == timeouts + 1
    assert (
        sample("accessai_ai_engine_failures_total", **labels, kind="upstream_error") == upstream + 1
    )


async def test_metrics_token_is_required_when_set(settings_factory) -> None:
    settings = settings_factory(metrics_token="scrape-secret-123")
    async with running_app(settings) as (_, client):
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert right.headers["content-type"].startswith("text/plain")
    assert "accessai_http_requests_total" in right.text


async def test_metrics_are_open_without_a_token(client) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
