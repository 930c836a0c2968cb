"""POST /v1/chat/completions and GET /v1/models over ASGI: billing, errors, usage log."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from accessai.chat.tokenizer import MessageText, load_tokenizer
from accessai.core.config import Settings
from accessai.main import create_app
from tests.chat.conftest import (
    COMPLETION_PER_1K,
    MARGIN_PERCENT,
    MAX_TOKENS_CAP,
    MODEL,
    PROMPT_PER_1K,
    UPSTREAM_MODEL,
    account,
    assert_ledger_invariant,
    chat_net,
    chat_settings,
    holds_of,
    usage_of,
)
from tests.factories import auth_headers, create_user
from tests.support import openai_wire as wire
from tests.support.network import free_port
from tests.support.openai_upstream import Behaviour, OpenAIUpstream

TOKENIZER = load_tokenizer()
URL = "/v1/chat/completions"


def ask(content: str = "Hello there", **options: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **options}


def counted_prompt(content: str) -> int:
    return TOKENIZER.count_messages([MessageText(role="user", content=content)])


def expected_hold(content: str, max_tokens: int, price) -> int:
    bound = math.ceil(counted_prompt(content) * (100 + MARGIN_PERCENT) / 100)
    return price.cost(bound, max_tokens)


def sse_events(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.split("\n\n") if line]


# --- Plain answers --------------------------------------------------------------------


async def test_charges_the_reported_usage_and_releases_the_rest(
    client: httpx.AsyncClient, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.reply("One two three four five."))

    response = await client.post(URL, json=ask(max_tokens=20), headers=auth_headers(settings, user))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL  # the public id, not the provider's
    assert body["choices"][0]["message"]["content"] == "One two three four five."
    reported = body["usage"]
    assert reported == {**reported, "prompt_tokens": 2, "completion_tokens": 6}
    cost = price.cost(2, 6)  # ceil(2 * 0.5 + 6 * 1.5) = 10
    assert cost == 10
    assert body["accessai"] == {"credits_charged": cost}

    hold = expected_hold("Hello there", 20, price)
    acct = await account(db, user.id)
    assert acct.balance == 1000 - cost
    [(hold_row), (release_row)] = acct.ledger[1:]
    [chat_hold] = await holds_of(db, user.id)
    assert hold_row == (-hold, "chat_hold", f"chat:{chat_hold.id}:hold")
    assert release_row == (hold - cost, "chat_release", f"chat:{chat_hold.id}:release")
    assert (chat_hold.status, chat_hold.amount, chat_hold.charged) == ("settled", hold, cost)
    assert chat_hold.settled_at is not None

    sent = openai_upstream.last_request.json
    assert sent["model"] == UPSTREAM_MODEL
    assert sent["max_completion_tokens"] == 20
    assert "stream" not in sent or sent["stream"] is False

    [usage] = await usage_of(db, user.id)
    assert (usage.endpoint, usage.engine, usage.model, usage.outcome) == (
        "chat",
        "openai",
        MODEL,
        "success",
    )
    assert (usage.prompt_tokens, usage.completion_tokens, usage.credits_charged) == (2, 6, cost)
    assert usage.input_chars == len("Hello there")
    assert usage.latency_ms >= 0
    assert usage.time_to_first_token_ms is None  # not a stream
    assert usage.request_id == response.headers["x-request-id"]
    await assert_ledger_invariant(db)


async def test_omitted_max_tokens_holds_and_passes_the_cap(
    client: httpx.AsyncClient, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)

    response = await client.post(URL, json=ask(), headers=auth_headers(settings, user))

    assert response.status_code == 200, response.text
    assert openai_upstream.last_request.json["max_completion_tokens"] == MAX_TOKENS_CAP
    [chat_hold] = await holds_of(db, user.id)
    assert chat_hold.amount == expected_hold("Hello there", MAX_TOKENS_CAP, price)


async def test_max_completion_tokens_is_honoured_and_the_smaller_limit_wins(
    client: httpx.AsyncClient, session, settings, openai_upstream: OpenAIUpstream
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.reply("a b c d e f g h"))

    response = await client.post(
        URL,
        json=ask(max_tokens=9, max_completion_tokens=3),
        headers=auth_headers(settings, user),
    )

    assert response.status_code == 200
    assert openai_upstream.last_request.json["max_completion_tokens"] == 3
    assert response.json()["choices"][0]["finish_reason"] == "length"


async def test_max_tokens_above_the_cap_is_refused_before_any_hold(
    client: httpx.AsyncClient, session, settings, db
) -> None:
    user = await create_user(session, credits=1000)

    response = await client.post(
        URL, json=ask(max_tokens=MAX_TOKENS_CAP + 1), headers=auth_headers(settings, user)
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert f"at most {MAX_TOKENS_CAP}" in error["message"]
    assert await holds_of(db, user.id) == []


async def test_without_reported_usage_the_tokenizer_counts(
    client: httpx.AsyncClient, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    reply = "Counted locally, since the provider says nothing."
    openai_upstream.script(Behaviour.reply(reply, include_usage=False))

    response = await client.post(URL, json=ask(max_tokens=40), headers=auth_headers(settings, user))

    assert response.status_code == 200
    prompt, output = counted_prompt("Hello there"), TOKENIZER.count(reply)
    body = response.json()
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
    }
    assert body["accessai"]["credits_charged"] == price.cost(prompt, output)
    assert await chat_net(db, user.id) == price.cost(prompt, output)
    [usage] = await usage_of(db, user.id)
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, output)
    await assert_ledger_invariant(db)


async def test_a_charge_never_exceeds_the_hold(
    client: httpx.AsyncClient, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    # The stand-in counts every "!" as a token; cl100k packs several into one,
    # so the provider reports more prompt tokens than our margin covered.
    user = await create_user(session, credits=1000)
    content = "!" * 400
    hold = expected_hold(content, 5, price)
    assert price.cost(400, 5) > hold

    response = await client.post(
        URL, json=ask(content, max_tokens=5), headers=auth_headers(settings, user)
    )

    assert response.status_code == 200
    assert response.json()["accessai"]["credits_charged"] == hold
    assert await chat_net(db, user.id) == hold
    await assert_ledger_invariant(db)


async def test_sampling_parameters_reach_the_provider(
    client: httpx.AsyncClient, session, settings, openai_upstream: OpenAIUpstream
) -> None:
    user = await create_user(session, credits=1000)
    request = ask(
        max_tokens=5,
        temperature=0.2,
        top_p=0.9,
        stop=["\n"],
        seed=7,
        user="end-user-1",
        response_format={"type": "json_object"},
        n=1,
    )
    request["messages"] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "ada"},
    ]

    response = await client.post(URL, json=request, headers=auth_headers(settings, user))

    assert response.status_code == 200, response.text
    sent = openai_upstream.last_request.json
    for key in ("temperature", "top_p", "stop", "seed", "user", "response_format"):
        assert sent[key] == request[key]
    assert sent["messages"] == request["messages"]


# --- Refusals ---------------------------------------------------------------------------


async def test_a_hold_larger_than_the_balance_is_refused_with_402(
    client: httpx.AsyncClient, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    required = expected_hold("Hello there", MAX_TOKENS_CAP, price)
    user = await create_user(session, credits=required - 1)

    response = await client.post(URL, json=ask(), headers=auth_headers(settings, user))

    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert error["type"] == "insufficient_credits"
    assert (error["balance"], error["required"]) == (required - 1, required)
    assert error["message"]
    assert openai_upstream.chat_requests == []  # the provider was never called
    assert (await account(db, user.id)).balance == required - 1
    assert await holds_of(db, user.id) == []
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.credits_charged) == ("insufficient_credits", 0)
    await assert_ledger_invariant(db)


async def test_a_hold_equal_to_the_balance_is_accepted(
    client: httpx.AsyncClient, session, settings, db, price
) -> None:
    required = expected_hold("Hello there", 10, price)
    user = await create_user(session, credits=required)

    response = await client.post(URL, json=ask(max_tokens=10), headers=auth_headers(settings, user))

    assert response.status_code == 200
    await assert_ledger_invariant(db)


async def test_concurrent_requests_never_hold_more_than_the_balance(
    client: httpx.AsyncClient, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    hold = expected_hold("Hello there", 20, price)
    user = await create_user(session, credits=hold * 2 + hold // 2)  # room for two holds
    # Slow answers keep every hold open while the others try.
    openai_upstream.set_default(Behaviour(first_token_delay_seconds=0.3))
    headers = auth_headers(settings, user)

    responses = await asyncio.gather(
        *(client.post(URL, json=ask(max_tokens=20), headers=headers) for _ in range(5))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) >= 2
    assert statuses.count(402) >= 1  # the holds overlapped: not all five fit
    assert set(statuses) <= {200, 402}
    charged = sum(
        r.json()["accessai"]["credits_charged"] for r in responses if r.status_code == 200
    )
    assert await chat_net(db, user.id) == charged
    for refused in (r for r in responses if r.status_code == 402):
        assert refused.json()["error"]["required"] == hold
    await assert_ledger_invariant(db)


# --- Provider failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "status", "code"),
    [
        (Behaviour.error(500), 502, "engine_error"),
        (Behaviour.error(429), 502, "engine_error"),
        (Behaviour.reply("x", empty_choices=True), 502, "engine_error"),
        (Behaviour.drop_after(0), 502, "engine_error"),
        # The SDK raises a bare ValueError for a body that is not JSON.
        (Behaviour(raw_body="{not json"), 502, "engine_error"),
    ],
)
async def test_a_provider_failure_charges_nothing(
    client: httpx.AsyncClient,
    session,
    settings,
    db,
    openai_upstream: OpenAIUpstream,
    behaviour: Behaviour,
    status: int,
    code: str,
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(behaviour)

    response = await client.post(URL, json=ask(max_tokens=10), headers=auth_headers(settings, user))

    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (code, "server_error")
    assert "sk-" not in error["message"]
    assert (await account(db, user.id)).balance == 1000
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.credits_charged) == (code, 0)
    await assert_ledger_invariant(db)


async def test_an_unreachable_provider_is_503_and_charges_nothing(
    settings_factory: Callable[..., Settings], db, session
) -> None:
    settings = chat_settings(settings_factory, f"http://127.0.0.1:{free_port()}/v1")
    user = await create_user(session, credits=1000)
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(URL, json=ask(), headers=auth_headers(settings, user))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "engine_unavailable"
    assert (await account(db, user.id)).balance == 1000
    await assert_ledger_invariant(db)


# --- Configuration and validation --------------------------------------------------------


async def test_without_a_provider_chat_answers_503_saying_how_to_configure_it(
    settings_factory: Callable[..., Settings], db, session
) -> None:
    settings = settings_factory()  # no OPENAI_API_KEY
    user = await create_user(session, credits=1000)
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(URL, json=ask(), headers=auth_headers(settings, user))
    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["code"] == "chat_not_configured"
    assert "OPENAI_API_KEY" in error["message"]
    assert "OPENAI_BASE_URL" in error["message"]
    assert (await account(db, user.id)).balance == 1000


async def test_unauthenticated_calls_get_401_in_openais_shape(client: httpx.AsyncClient) -> None:
    for response in (await client.post(URL, json=ask()), await client.get("/v1/models")):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"


async def test_errors_outside_v1_keep_the_usual_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/no-such-page")
    assert response.json() == {"error": "not_found", "message": "Not Found"}


@pytest.mark.parametrize(
    ("change", "code", "param"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "unsupported_parameter",
            "tools",
        ),
        ({"n": 2}, "invalid_value", "n"),
        ({"temperature": 3}, "invalid_value", "temperature"),
        ({"messages": []}, "invalid_value", "messages"),
        ({"model": None}, "invalid_value", "model"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "invalid_value",
            "messages.0.content.str",
        ),
    ],
)
async def test_invalid_requests_get_400_naming_the_parameter(
    client: httpx.AsyncClient, session, settings, db, change: dict[str, Any], code: str, param: str
) -> None:
    user = await create_user(session, credits=1000)
    response = await client.post(
        URL, json={**ask(), **change}, headers=auth_headers(settings, user)
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (code, "invalid_request_error")
    assert error["param"] == param
    assert await holds_of(db, user.id) == []


async def test_missing_model_and_bad_json(client: httpx.AsyncClient, session, settings) -> None:
    user = await create_user(session, credits=1000)
    headers = auth_headers(settings, user)
    missing = await client.post(URL, json={"messages": ask()["messages"]}, headers=headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "missing_required_parameter"
    assert missing.json()["error"]["param"] == "model"
    broken = await client.post(
        URL, content=b"{not json", headers={**headers, "content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"


async def test_an_unknown_model_is_404(client: httpx.AsyncClient, session, settings) -> None:
    user = await create_user(session, credits=1000)
    response = await client.post(
        URL, json={**ask(), "model": "gpt-9"}, headers=auth_headers(settings, user)
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_models_lists_the_price_book(client: httpx.AsyncClient, session, settings) -> None:
    user = await create_user(session, credits=1000)
    headers = auth_headers(settings, user)

    listing = await client.get("/v1/models", headers=headers)
    one = await client.get(f"/v1/models/{MODEL}", headers=headers)
    missing = await client.get("/v1/models/gpt-9", headers=headers)

    assert listing.status_code == 200
    card = {
        "id": MODEL,
        "object": "model",
        "created": 0,
        "owned_by": "accessai",
        "pricing": {
            "prompt_credits_per_1k": PROMPT_PER_1K,
            "completion_credits_per_1k": COMPLETION_PER_1K,
            "max_output_tokens": MAX_TOKENS_CAP,
        },
    }
    assert listing.json() == {"object": "list", "data": [card]}
    assert one.json() == card
    assert missing.status_code == 404


# --- Streams (buffered by the ASGI transport; disconnects are in test_chat_sdk) ---------------


async def test_a_stream_relays_openais_chunks_and_charges_the_reported_usage(
    client: httpx.AsyncClient, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.reply("Streamed words, one by one."))

    response = await client.post(
        URL,
        json=ask(max_tokens=30, stream=True, stream_options={"include_usage": True}),
        headers=auth_headers(settings, user),
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in response.headers
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {MODEL}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Streamed words, one by one."
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    output = wire.count_tokens(text)
    assert usage_chunk["usage"]["completion_tokens"] == output
    # The provider was asked for usage, which is what makes the charge exact.
    assert openai_upstream.last_request.json["stream_options"] == {"include_usage": True}

    cost = price.cost(2, output)
    assert await chat_net(db, user.id) == cost
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.credits_charged) == ("success", cost)
    assert usage.time_to_first_token_ms is not None
    assert 0 <= usage.time_to_first_token_ms <= usage.latency_ms
    await assert_ledger_invariant(db)


async def test_the_usage_chunk_is_forwarded_only_when_asked(
    client: httpx.AsyncClient, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)

    response = await client.post(
        URL, json=ask(max_tokens=30, stream=True), headers=auth_headers(settings, user)
    )

    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] and "usage" not in c for c in chunks)
    # ...but it was still requested upstream and charged exactly.
    assert openai_upstream.last_request.json["stream_options"] == {"include_usage": True}
    reply = "echo: Hello there"
    assert await chat_net(db, user.id) == price.cost(2, wire.count_tokens(reply))


async def test_a_provider_that_hangs_is_cut_at_the_deadline_and_charges_nothing(
    settings_factory: Callable[..., Settings], openai_upstream: OpenAIUpstream, db, session
) -> None:
    settings = chat_settings(
        settings_factory,
        openai_upstream.base_url,
        chat_max_duration_seconds=0.3,
        chat_hold_timeout_seconds=61,
    )
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.hang(20))
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(URL, json=ask(), headers=auth_headers(settings, user))
    assert response.status_code == 504
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("engine_timeout", "server_error")
    assert (await account(db, user.id)).balance == 1000
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.credits_charged) == ("engine_timeout", 0)
    assert openai_upstream.wait_for_requests(1)[0].outcome == "client_disconnected"
    await assert_ledger_invariant(db)


async def test_nonsense_usage_from_the_provider_is_replaced_by_our_count(
    client: httpx.AsyncClient, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    body = wire.completion_payload(
        completion_id="chatcmpl-x",
        created=0,
        model=UPSTREAM_MODEL,
        content="Fine.",
        finish_reason="stop",
        usage={"prompt_tokens": -5, "completion_tokens": "many"},
    )
    openai_upstream.script(Behaviour(raw_body=json.dumps(body)))

    response = await client.post(URL, json=ask(max_tokens=10), headers=auth_headers(settings, user))

    assert response.status_code == 200
    prompt, output = counted_prompt("Hello there"), TOKENIZER.count("Fine.")
    assert response.json()["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
    }
    assert await chat_net(db, user.id) == price.cost(prompt, output)
    await assert_ledger_invariant(db)
