"""Body size limit, security headers, CORS and the self-hosted docs page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, Request

from tests.support.app import running_app

LIMIT = 2048


def add_echo_route(app: FastAPI) -> list[int]:
    """A route that reads its body; returns the list of sizes it managed to read."""
    seen: list[int] = []

    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        seen.append(len(body))
        return {"size": len(body)}

    app.add_api_route("/_test/echo", echo, methods=["POST"])
    return seen


# --- Body size ---------------------------------------------------------------------


async def test_a_body_within_the_limit_is_accepted(settings_factory) -> None:
    async with running_app(settings_factory(max_request_body_bytes=LIMIT)) as (app, client):
        add_echo_route(app)
        response = await client.post("/_test/echo", content=b"x" * LIMIT)
    assert response.status_code == 200
    assert response.json() == {"size": LIMIT}


async def test_a_declared_oversized_body_is_refused_before_the_route(settings_factory) -> None:
    async with running_app(settings_factory(max_request_body_bytes=LIMIT)) as (app, client):
        seen = add_echo_route(app)
        response = await client.post("/_test/echo", content=b"x" * (LIMIT + 1))
        # Even a route that never reads its body is protected.
        unread = await client.post("/health/live", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "message": f"The request body is larger than {LIMIT} bytes.",
        "max_bytes": LIMIT,
    }
    assert unread.status_code == 413
    assert seen == []


async def test_a_streamed_body_is_cut_off_at_the_limit(settings_factory, capsys) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 512  # 5120 bytes in all, no Content-Length

    async with running_app(settings_factory(max_request_body_bytes=LIMIT)) as (app, client):
        seen = add_echo_route(app)
        capsys.readouterr()
        response = await client.post("/_test/echo", content=chunks())
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert seen == []
    # A refusal, not a crash: logged as a completed request.
    output = capsys.readouterr().out
    assert '"request.failed"' not in output


# --- Security headers -------------------------------------------------------------------


async def test_security_headers_on_api_responses(client) -> None:
    for response in (await client.get("/health/live"), await client.get("/no/such/route")):
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "style-src 'self';" in csp
        assert "frame-ancestors 'none'" in csp
        assert "object-src 'none'" in csp
        assert "unsafe-eval" not in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        # Plain HTTP: no HSTS.
        assert "strict-transport-security" not in headers


async def test_hsts_only_over_https_from_a_trusted_proxy(settings_factory) -> None:
    settings = settings_factory(forwarded_allow_ips="10.0.0.1")
    https = {"X-Forwarded-Proto": "https"}
    async with running_app(settings, peer=("10.0.0.1", 1000)) as (_, proxied):
        via_proxy = await proxied.get("/health/live", headers=https)
    async with running_app(settings, peer=("192.0.2.9", 1000)) as (_, direct):
        spoofed = await direct.get("/health/live", headers=https)
    assert via_proxy.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert "strict-transport-security" not in spoofed.headers


# --- CORS -----------------------------------------------------------------------------------


@pytest.fixture
def settings(settings_factory):
    return settings_factory(cors_origins="https://app.example.com")


async def test_cors_allows_only_listed_origins(client) -> None:
    allowed = await client.options(
        "/health",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers

    refused = await client.options(
        "/health",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "GET"},
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers

    simple = await client.get("/health/live", headers={"Origin": "https://app.example.com"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    other = await client.get("/health/live", headers={"Origin": "https://evil.example.net"})
    assert "access-control-allow-origin" not in other.headers


# --- Docs page -----------------------------------------------------------------------------


async def test_docs_page_is_served_from_local_assets(client) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "cdn" not in html.lower()
    assert "<script>" not in html  # no inline script: only src= scripts
    assert 'data-openapi-url="openapi.json"' in html
    # The same strict policy as every other response.
    assert (
        page.headers["content-security-policy"]
        == (await client.get("/health/live")).headers["content-security-policy"]
    )

    for asset in ("docs/assets/swagger-ui-bundle.js", "docs/assets/swagger-ui.css"):
        response = await client.get(f"/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 10_000
        assert f'"{asset}"' in html
    init = await client.get("/docs/swagger-init.js")
    assert init.status_code == 200
    assert init.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle(" in init.text
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "AccessAI"
    assert (await client.get("/redoc")).status_code == 404
