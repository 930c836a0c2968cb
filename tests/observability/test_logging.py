"""Structured request logs: the fields every line has, and the secrets none has."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from fastapi import Request

from accessai.core.security import CurrentUser
from accessai.credits.service import InsufficientCreditsError
from accessai.observability.logging import get_logger, redact_text
from tests.factories import auth_headers, create_user

SIGNATURE = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"
REQUEST_FIELDS = {"timestamp", "level", "event", "request_id", "method", "route", "status"}


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def request_line(output: str) -> dict[str, Any]:
    lines = [line for line in json_lines(output) if line["event"].startswith("request.")]
    assert len(lines) == 1, lines
    return lines[0]


async def test_an_authenticated_request_line_carries_the_user(
    app, client, session, settings, capsys
) -> None:
    user = await create_user(session)

    async def whoami(user: CurrentUser) -> dict[str, str]:
        return {"id": str(user.id)}

    app.add_api_route("/_test/whoami/{name}", whoami, methods=["GET"])
    capsys.readouterr()
    response = await client.get("/_test/whoami/x", headers=auth_headers(settings, user))
    line = request_line(capsys.readouterr().out)

    assert response.status_code == 200
    assert line.keys() >= REQUEST_FIELDS
    assert line["event"] == "request.completed"
    assert line["level"] == "info"
    assert line["route"] == "/_test/whoami/{name}"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["user_id"] == str(user.id)
    assert line["request_id"] == response.headers["x-request-id"]


async def test_an_anonymous_request_line_has_no_user_but_the_error_code(
    app, client, capsys
) -> None:
    async def whoami(user: CurrentUser) -> None:
        raise AssertionError("not reached")

    app.add_api_route("/_test/whoami", whoami, methods=["GET"])
    capsys.readouterr()
    response = await client.get("/_test/whoami")
    line = request_line(capsys.readouterr().out)
    assert response.status_code == 401
    assert "user_id" not in line
    assert line["status"] == 401
    assert line["error_code"] == "unauthorized"


async def test_expected_errors_are_logged_with_their_code(
    app, client, session, settings, capsys
) -> None:
    user = await create_user(session)

    async def broke(user: CurrentUser) -> None:
        raise InsufficientCreditsError(balance=1, required=10)

    app.add_api_route("/_test/broke", broke, methods=["POST"])
    capsys.readouterr()
    await client.post("/_test/broke", headers=auth_headers(settings, user))
    line = request_line(capsys.readouterr().out)
    assert line["level"] == "info"
    assert (line["status"], line["error_code"], line["user_id"]) == (
        402,
        "insufficient_credits",
        str(user.id),
    )


async def test_an_unexpected_error_is_logged_with_its_details(
    app, client, session, settings, capsys
) -> None:
    user = await create_user(session)

    async def explode(user: CurrentUser) -> None:
        raise ValueError("unexpected state 42")

    app.add_api_route("/_test/explode", explode, methods=["POST"])
    capsys.readouterr()
    response = await client.post("/_test/explode", headers=auth_headers(settings, user))
    line = request_line(capsys.readouterr().out)
    assert response.status_code == 500
    assert line["event"] == "request.failed"
    assert line["level"] == "error"
    assert line["status"] == 500
    assert line["user_id"] == str(user.id)
    assert "ValueError: unexpected state 42" in line["exception"]
    assert "explode" in line["exception"]


async def test_secrets_never_reach_the_logs(app, client, session, settings, capsys) -> None:
    """Even code that carelessly logs headers, bodies and exceptions leaks nothing."""
    user = await create_user(session)
    headers = auth_headers(settings, user)
    token = headers["Authorization"].split()[1]
    careless = get_logger("accessai.test.careless")

    async def careless_route(request: Request, user: CurrentUser) -> None:
        payload = await request.json()
        careless.info(
            "careless.request",
            headers=dict(request.headers),
            body=payload,
            settings_dump={"stripe_secret_key": "sk_live_abcdefghijkl", "api_key": "k-123"},
            note=f"got {request.headers['authorization']} / {request.headers['stripe-signature']}",
        )
        logging.getLogger("some.library").warning(
            "retrying with key %s", payload["nested"]["webhook_secret"]
        )
        raise RuntimeError(f"failed for {request.headers['authorization']}")

    app.add_api_route("/_test/careless", careless_route, methods=["POST"])
    capsys.readouterr()
    response = await client.post(
        "/_test/careless",
        headers={
            **headers,
            "Stripe-Signature": f"t=1700000000,v1={SIGNATURE}",
            "Cookie": "session=cookie-value-secret",
        },
        json={"password": "hunter2-secret", "nested": {"webhook_secret": "whsec_abcdef123456"}},
    )
    output = capsys.readouterr().out
    assert response.status_code == 500
    assert json_lines(output), "something was logged"
    for secret in (
        token,
        "hunter2-secret",
        "whsec_abcdef123456",
        "sk_live_abcdefghijkl",
        "k-123",
        SIGNATURE,
        "cookie-value-secret",
    ):
        assert secret not in output, secret
    assert "[redacted]" in output


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Bearer abc.def.ghi", ""),
        ("key sk_test_51Habc and rk_live_9xyz", "key  and "),
        ("user 42 paid 900 cents", "user 42 paid 900 cents"),
    ],
)
def test_credential_shapes_are_redacted(text: str, kept: str) -> None:
    assert redact_text(text).replace("[redacted]", "") == kept
