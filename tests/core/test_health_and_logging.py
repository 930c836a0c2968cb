import json
import os

import httpx
import pytest


async def test_health_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    live = await client.get("/health/live")
    assert live.json() == {"status": "ok"}


async def test_docs_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "AccessAI"


def _request_lines(output: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if str(line.get("event", "")).startswith("request.")]


async def test_each_request_logs_one_structured_line(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    response = await client.get("/health/live")
    lines = _request_lines(capsys.readouterr().out)
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "request.completed"
    assert line["level"] == "info"
    assert line["method"] == "GET"
    assert line["route"] == "/health/live"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["timestamp"]
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["pid"] == os.getpid()


async def test_a_sent_request_id_is_echoed(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    response = await client.get("/health/live", headers={"X-Request-ID": "req-42.a"})
    assert response.headers["x-request-id"] == "req-42.a"
    assert _request_lines(capsys.readouterr().out)[0]["request_id"] == "req-42.a"


async def test_an_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


async def test_unknown_route_uses_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "Not Found"}


async def test_unexpected_error_gives_generic_500_with_request_id(
    app, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/_test/explode", explode)
    capsys.readouterr()
    response = await client.get("/_test/explode")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "secret internals" not in response.text
    lines = _request_lines(capsys.readouterr().out)
    assert [line["event"] for line in lines] == ["request.failed"]
    assert "RuntimeError" in str(lines[0]["exception"])
