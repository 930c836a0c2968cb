"""Rate limits: counts per user and per client IP, shared through Redis, never charged."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from prometheus_client import REGISTRY
from pydantic import ValidationError
from redis.asyncio import Redis

from accessai.core.config import describe_validation_error
from accessai.core.db import SessionDep
from accessai.core.security import CurrentUser
from accessai.credits import service as credits
from accessai.hardening.ratelimit import (
    RateLimit,
    ai_rate_limit,
    auth_rate_limit,
)
from tests.factories import auth_headers, create_user
from tests.support.app import running_app
from tests.support.network import closed_port
from tests.support.settings import make_settings

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def add_charged_route(app: FastAPI) -> None:
    """A stand-in for an AI endpoint: limited per user, charges 1 credit in its body."""

    async def charged(user: CurrentUser, session: SessionDep) -> dict[str, int]:
        movement = await credits.deduct_credits(session, user.id, 1, "test_call")
        return {"balance": movement.balance_after}

    app.add_api_route(
        "/_test/charged", charged, methods=["POST"], dependencies=[Depends(ai_rate_limit)]
    )


def add_public_route(app: FastAPI, limit: RateLimit = auth_rate_limit) -> None:
    async def public() -> dict[str, bool]:
        return {"ok": True}

    app.add_api_route("/_test/public", public, methods=["GET"], dependencies=[Depends(limit)])


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def send_25_and_check(app: FastAPI, client: Any, headers: dict[str, str]) -> None:
    refused_before = counter("accessai_rate_limited_total", scope="ai")
    responses = [await client.post("/_test/charged", headers=headers) for _ in range(25)]
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * 20 + [429] * 5

    # The limit and what is left are on every checked response.
    assert [int(r.headers["x-ratelimit-remaining"]) for r in responses[:20]] == list(
        range(19, -1, -1)
    )
    assert all(r.headers["x-ratelimit-limit"] == "20" for r in responses)

    refused = responses[-1]
    body = refused.json()
    assert body["error"] == "rate_limited"
    assert isinstance(body["message"], str)
    assert 1 <= body["retry_after"] <= 60
    assert refused.headers["retry-after"] == str(body["retry_after"])
    assert refused.headers["x-ratelimit-remaining"] == "0"
    reset = int(refused.headers["x-ratelimit-reset"])
    assert time.time() < reset <= time.time() + 61

    # Refused requests never reached the route body: 20 credits spent, not 25.
    assert responses[19].json() == {"balance": 80}
    assert counter("accessai_rate_limited_total", scope="ai") - refused_before == 5


async def test_25_calls_in_a_minute_20_pass_5_refused_in_memory(settings_factory, session) -> None:
    user = await create_user(session, credits=100)
    settings = settings_factory()
    async with running_app(settings) as (app, client):
        add_charged_route(app)
        await send_25_and_check(app, client, auth_headers(settings, user))


async def test_25_calls_in_a_minute_20_pass_5_refused_with_redis(
    settings_factory, session, redis_ns
) -> None:
    user = await create_user(session, credits=100)
    settings = settings_factory(redis_url=redis_ns.url, rate_limit_key_prefix=redis_ns.prefix)
    async with running_app(settings) as (app, client):
        add_charged_route(app)
        await send_25_and_check(app, client, auth_headers(settings, user))
    assert await keys_under(redis_ns), "the count lives in Redis"


async def keys_under(namespace: Any) -> list[bytes]:
    redis: Redis = Redis.from_url(namespace.url)
    try:
        return [key async for key in redis.scan_iter(match=f"{namespace.prefix}:*")]
    finally:
        await redis.aclose()


async def test_two_instances_sharing_redis_enforce_one_limit(
    settings_factory, session, redis_ns
) -> None:
    user = await create_user(session, credits=100)
    settings = settings_factory(redis_url=redis_ns.url, rate_limit_key_prefix=redis_ns.prefix)
    headers = auth_headers(settings, user)
    async with (
        running_app(settings) as (app_a, client_a),
        running_app(settings) as (app_b, client_b),
    ):
        add_charged_route(app_a)
        add_charged_route(app_b)
        statuses = []
        for i in range(25):
            client = client_a if i % 2 == 0 else client_b
            statuses.append((await client.post("/_test/charged", headers=headers)).status_code)
    assert statuses.count(200) == 20
    assert statuses.count(429) == 5
    assert statuses[20:] == [429] * 5


async def test_users_have_separate_limits(settings_factory, session) -> None:
    first = await create_user(session, credits=100)
    second = await create_user(session, credits=100)
    settings = settings_factory(rate_limit_ai="2/minute")
    async with running_app(settings) as (app, client):
        add_charged_route(app)
        first_statuses = [
            (await client.post("/_test/charged", headers=auth_headers(settings, first))).status_code
            for _ in range(3)
        ]
        second_status = (
            await client.post("/_test/charged", headers=auth_headers(settings, second))
        ).status_code
    assert first_statuses == [200, 200, 429]
    assert second_status == 200


async def test_anonymous_calls_are_refused_before_counting(settings_factory) -> None:
    settings = settings_factory(rate_limit_ai="1/minute")
    async with running_app(settings) as (app, client):
        add_charged_route(app)
        statuses = [(await client.post("/_test/charged")).status_code for _ in range(3)]
        response = await client.post("/_test/charged")
    assert statuses == [401, 401, 401]
    assert not any(name in response.headers for name in RATE_HEADERS)


async def test_redis_unreachable_fails_open_with_a_metric_and_a_log(
    settings_factory, session, capsys
) -> None:
    user = await create_user(session, credits=100)
    settings = settings_factory(
        redis_url=f"redis://127.0.0.1:{closed_port()}/0", rate_limit_ai="2/minute"
    )
    errors_before = counter("accessai_rate_limiter_errors_total", scope="ai")
    capsys.readouterr()
    async with running_app(settings) as (app, client):
        add_charged_route(app)
        responses = [
            await client.post("/_test/charged", headers=auth_headers(settings, user))
            for _ in range(4)
        ]
    # Over the 2/minute limit, yet served: the limiter cannot count, the database still charges.
    assert [r.status_code for r in responses] == [200] * 4
    assert responses[-1].json() == {"balance": 96}
    assert not any(name in responses[0].headers for name in RATE_HEADERS)
    assert counter("accessai_rate_limiter_errors_total", scope="ai") - errors_before == 4
    output = capsys.readouterr().out
    # Logged, but not once per request.
    assert output.count('"ratelimit.storage_unavailable"') == 1


async def test_limits_per_client_ip(settings_factory) -> None:
    settings = settings_factory(rate_limit_auth="2/minute")
    async with (
        running_app(settings, peer=("198.51.100.7", 4000)) as (app, client),
    ):
        add_public_route(app)
        statuses = [(await client.get("/_test/public")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert (await client.get("/health/live")).status_code == 200


async def test_forwarded_for_is_trusted_only_from_configured_proxies(settings_factory) -> None:
    settings = settings_factory(rate_limit_auth="1/minute", forwarded_allow_ips="10.0.0.1")
    async with running_app(settings, peer=("10.0.0.1", 4000)) as (app, proxy):
        add_public_route(app)
        # Behind the trusted proxy, each forwarded client has its own count.
        first = await proxy.get("/_test/public", headers={"X-Forwarded-For": "203.0.113.1"})
        second = await proxy.get("/_test/public", headers={"X-Forwarded-For": "203.0.113.2"})
        again = await proxy.get("/_test/public", headers={"X-Forwarded-For": "203.0.113.1"})
    assert [first.status_code, second.status_code, again.status_code] == [200, 200, 429]

    async with running_app(settings, peer=("192.0.2.50", 4000)) as (app, direct):
        add_public_route(app)
        # A direct client cannot escape its limit by inventing X-Forwarded-For.
        spoofed = [
            await direct.get("/_test/public", headers={"X-Forwarded-For": f"203.0.113.{i}"})
            for i in range(3)
        ]
    assert [r.status_code for r in spoofed] == [200, 429, 429]


async def test_limiter_can_be_switched_off(settings_factory) -> None:
    settings = settings_factory(rate_limit_auth="1/minute", rate_limit_enabled=False)
    async with running_app(settings) as (app, client):
        add_public_route(app)
        statuses = [(await client.get("/_test/public")).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]


async def test_several_limits_on_one_setting(settings_factory) -> None:
    settings = settings_factory(rate_limit_auth="3/minute;2/second")
    async with running_app(settings) as (app, client):
        add_public_route(app)
        responses = [await client.get("/_test/public") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    # The tightest limit is the one reported.
    assert responses[0].headers["x-ratelimit-limit"] == "2"
    assert responses[2].headers["x-ratelimit-limit"] == "2"


def test_a_limit_names_an_existing_setting() -> None:
    with pytest.raises(ValueError, match="not a setting"):
        RateLimit("x", "rate_limit_typo")


@pytest.mark.parametrize("value", ["lots", "20 per", ""])
def test_invalid_limits_stop_start_up(value: str) -> None:
    with pytest.raises(ValidationError) as error:
        make_settings(rate_limit_ai=value)
    assert "RATE_LIMIT_AI" in describe_validation_error(error.value)
