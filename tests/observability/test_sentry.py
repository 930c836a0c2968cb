"""Sentry through the real SDK, sending envelopes to a loopback receiver.

The SDK is initialised by create_app() from SENTRY_DSN exactly as in
production; the receiver is a tiny HTTP server on a free port that keeps
every envelope it gets. The client is flushed before asserting.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from fastapi import Request
from sentry_sdk.envelope import Envelope

from accessai.core.security import CurrentUser
from accessai.credits.service import InsufficientCreditsError
from tests.factories import auth_headers, create_user
from tests.support.app import running_app

CRUMB_SECRET = "whsec_" + "crumb" + "secret123"


@dataclass
class SentryReceiver:
    port: int
    raw: list[bytes] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.port}/1"

    def events(self) -> list[dict[str, Any]]:
        found = []
        for body in self.raw:
            for item in Envelope.deserialize(body).items:
                if item.type == "event" and item.payload.json is not None:
                    found.append(item.payload.json)
        return found


@pytest.fixture
def sentry_receiver() -> Iterator[SentryReceiver]:
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            encoding = self.headers.get("Content-Encoding", "")
            assert encoding in ("", "gzip"), f"unexpected encoding {encoding}"
            received.append(gzip.decompress(body) if encoding == "gzip" else body)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SentryReceiver(port=server.server_address[1], raw=received)
    finally:
        # The SDK is process-wide: leave it disabled for the other tests.
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_unexpected_error_is_captured_once_with_context(
    settings_factory, session, sentry_receiver
) -> None:
    user = await create_user(session, credits=5)
    settings = settings_factory(sentry_dsn=sentry_receiver.dsn)
    token_headers = auth_headers(settings, user)
    async with running_app(settings) as (app, client):

        async def explode(item_id: int, request: Request, user: CurrentUser) -> None:
            # Another library logs a secret (a breadcrumb), then the error quotes the token.
            # (Built at run time: Sentry sends source lines around each frame.)
            logging.getLogger("some.library").warning("retry with %s", CRUMB_SECRET)
            raise RuntimeError(f"the ledger caught fire for {request.headers['authorization']}")

        app.add_api_route("/_test/explode/{item_id}", explode, methods=["POST"])
        response = await client.post(
            "/_test/explode/7",
            headers={
                **token_headers,
                "Cookie": "session=cookie-secret-value",
                "Stripe-Signature": "t=1,v1=signature-secret-value",
            },
            json={"password": "body-secret-value"},
        )
        assert sentry_sdk.get_client().flush(timeout=10) is None

    assert response.status_code == 500
    assert response.json()["request_id"] == response.headers["x-request-id"]
    events = sentry_receiver.events()
    assert len(events) == 1, events
    event = events[0]

    exception = event["exception"]["values"][-1]
    assert exception["type"] == "RuntimeError"
    assert exception["value"].startswith("the ledger caught fire for [redacted]")
    crumbs = event["breadcrumbs"]["values"]
    assert any(crumb.get("message", "").startswith("retry with") for crumb in crumbs)
    assert exception["mechanism"]["handled"] is False
    frames = exception["stacktrace"]["frames"]
    assert any(frame["function"] == "explode" for frame in frames)
    assert event["tags"]["request_id"] == response.headers["x-request-id"]
    assert event["tags"]["route"] == "/_test/explode/{item_id}"
    assert event["user"]["id"] == str(user.id)
    assert event["environment"] == "test"
    assert event["release"].startswith("accessai@")

    # Credentials and bodies never leave the process.
    sent = b"".join(sentry_receiver.raw)
    token = token_headers["Authorization"].split()[1]
    for secret in (
        token,
        "cookie-secret-value",
        "signature-secret-value",
        "body-secret-value",
        CRUMB_SECRET,
    ):
        assert secret.encode() not in sent


async def test_expected_errors_are_not_sent(settings_factory, session, sentry_receiver) -> None:
    user = await create_user(session, credits=5)
    settings = settings_factory(sentry_dsn=sentry_receiver.dsn)
    async with running_app(settings) as (app, client):

        async def broke(user: CurrentUser) -> None:
            raise InsufficientCreditsError(balance=5, required=10)

        app.add_api_route("/_test/broke", broke, methods=["POST"])
        statuses = [
            (await client.get("/no/such/route")).status_code,
            (await client.post("/_test/broke")).status_code,
            (await client.post("/_test/broke", headers=auth_headers(settings, user))).status_code,
            (await client.get("/metrics", headers={"Authorization": "Bearer x"})).status_code,
        ]
        sentry_sdk.get_client().flush(timeout=10)
    assert statuses == [404, 401, 402, 200]
    assert sentry_receiver.events() == []


def test_without_a_dsn_nothing_is_initialised(settings_factory) -> None:
    from accessai.observability.sentry import init_sentry

    assert init_sentry(settings_factory()) is False
    assert not sentry_sdk.get_client().is_active()
