"""Schema-driven fuzzing: every operation in the OpenAPI document, valid and invalid input.

Schemathesis generates requests from the app's own schema and sends them
in-process over ASGI (its client runs the app's lifespan on its own event
loop thread), signed in as a real test user so protected routes run their
code, not just the 401. Each response must not be a 5xx and must match the
documented schema and content type. Example counts are bounded and the
generation is derandomised, so the run is short and repeatable.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, Phase, given, settings
from pydantic import BaseModel
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from accessai.main import create_app
from tests.chat.conftest import chat_settings
from tests.factories import auth_headers, create_user
from tests.payments.conftest import stripe_settings

EXAMPLES_PER_OPERATION = 20


def _error_code(body: Any) -> str:
    """The code in our error shape, or in the OpenAI-style shape of /v1."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("code", ""))
    return str(error or "")


def no_server_error(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """No 5xx, except the documented 503 of a feature this deployment did not configure
    (Google sign-in here: its stand-in needs a browser-style redirect flow)."""
    if response.status_code == 503 and _error_code(response.json()).endswith("_not_configured"):
        return True
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]


def fuzz(app: FastAPI, headers: dict[str, str], *, only: str | None = None) -> int:
    """Fuzz every operation (or those whose path starts with ``only``); returns how many."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    if only is not None:
        operations = [operation for operation in operations if operation.path.startswith(only)]
    try:
        for operation in operations:
            takes_input = bool(
                operation.definition.raw.get("parameters")
                or operation.definition.raw.get("requestBody")
            )
            # Without parameters or a body there is no invalid input to make.
            modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if takes_input else [])
            for mode in modes:

                @settings(
                    max_examples=EXAMPLES_PER_OPERATION,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(mode))
                def exercise(case: schemathesis.Case) -> None:
                    case.call_and_validate(headers=headers, checks=CHECKS)

                exercise()
    finally:
        shutdown_lifespans()
    return len(operations)


@pytest.fixture
async def signed_in(settings_factory, session, stripe_standin, openai_upstream):
    # Payments and chat talk to their local stand-ins, so their routes run for
    # real. Limits off: the fuzzer explores route code, not the 429 path.
    fuzz_settings = chat_settings(
        settings_factory,
        openai_upstream.base_url,
        **stripe_settings(stripe_standin),
        rate_limit_enabled=False,
    )
    user = await create_user(session, credits=100_000)
    return fuzz_settings, auth_headers(fuzz_settings, user)


def test_no_operation_fails_or_breaks_its_schema(signed_in) -> None:
    fuzz_settings, headers = signed_in
    assert fuzz(create_app(fuzz_settings), headers) >= 2


class Promised(BaseModel):
    count: int


def test_the_fuzzer_catches_a_broken_route(signed_in) -> None:
    fuzz_settings, headers = signed_in
    app = create_app(fuzz_settings)

    async def broken(n: int) -> JSONResponse:
        # Documents {"count": int} but answers something else.
        return JSONResponse({"count": "many"})

    app.add_api_route(
        "/_probe/{n}",
        broken,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": Promised}},
    )
    with pytest.raises(FailureGroup) as found:
        fuzz(app, headers, only="/_probe")
    assert [type(error).__name__ for error in found.value.exceptions] == ["JsonSchemaError"]
