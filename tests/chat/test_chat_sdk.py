"""The official openai SDK against AccessAI served on a loopback port.

AccessAI (uvicorn in a thread) forwards to the OpenAI stand-in; the SDK is
pointed at AccessAI with an access token as its API key. A real connection
is what lets these tests abort a stream the way a client does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import openai
import pytest

from accessai.auth import api_keys
from accessai.chat.tokenizer import MessageText, load_tokenizer
from accessai.core.config import Settings
from accessai.main import create_app
from tests.chat.conftest import (
    MODEL,
    account,
    assert_ledger_invariant,
    chat_net,
    chat_settings,
    holds_of,
    usage_of,
    wait_for_settlement,
)
from tests.factories import auth_headers, create_user
from tests.support import openai_wire as wire
from tests.support.live_server import LiveServer
from tests.support.openai_upstream import Behaviour, OpenAIUpstream

TOKENIZER = load_tokenizer()
PROMPT = "Count to eight, please."
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]
# One stand-in token per word, and one cl100k token per word too.
WORDS = ["one", " two", " three", " four", " five", " six", " seven", " eight"]
REPLY = "".join(WORDS)
# The stand-in waits this long before each token after the first, unless the
# client leaves: long enough that nothing else arrives while a test aborts.
STALL_SECONDS = 20.0


def token_of(settings: Settings, user) -> str:
    return auth_headers(settings, user)["Authorization"].removeprefix("Bearer ")


def sync_client(server: LiveServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0)


def async_client(server: LiveServer, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0)


def counted_prompt() -> int:
    return TOKENIZER.count_messages([MessageText(role="user", content=PROMPT)])


def reported_prompt() -> int:
    return wire.count_prompt_tokens(MESSAGES)


# --- Sync and async, streamed and not -----------------------------------------------------


async def test_sync_sdk_plain_completion(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.reply(REPLY))
    with sync_client(live_server, token_of(settings, user)) as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)

    assert completion.choices[0].message.content == REPLY
    assert completion.model == MODEL
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        reported_prompt(),
        8,
    )
    cost = price.cost(reported_prompt(), 8)
    assert completion.model_extra == {"accessai": {"credits_charged": cost}}
    assert await chat_net(db, user.id) == cost
    await assert_ledger_invariant(db)


async def test_sync_sdk_stream_with_usage(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.reply(REPLY))
    with sync_client(live_server, token_of(settings, user)) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8
    await wait_for_settlement(db, user.id)
    assert await chat_net(db, user.id) == price.cost(reported_prompt(), 8)
    [usage] = await usage_of(db, user.id)
    assert usage.outcome == "success"
    assert usage.time_to_first_token_ms is not None
    await assert_ledger_invariant(db)


async def test_async_sdk_plain_and_streamed(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    async with async_client(live_server, token_of(settings, user)) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=20
        )
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]

    echo = "echo: " + PROMPT
    assert completion.choices[0].message.content == echo
    assert "".join(pieces) == echo
    await wait_for_settlement(db, user.id, count=2)
    one = price.cost(reported_prompt(), wire.count_tokens(echo))
    assert await chat_net(db, user.id) == 2 * one
    assert [u.outcome for u in await usage_of(db, user.id)] == ["success", "success"]
    await assert_ledger_invariant(db)


async def test_an_api_key_works_as_the_sdks_api_key(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    created = await api_keys.create_api_key(session, user.id, "sdk")
    await session.commit()
    openai_upstream.script(Behaviour.reply(REPLY))
    async with async_client(live_server, created.key) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=20
        )
    assert completion.choices[0].message.content == REPLY
    assert await chat_net(db, user.id) == price.cost(reported_prompt(), 8)
    await assert_ledger_invariant(db)


async def test_sdk_models_listing(live_server, session, settings) -> None:
    user = await create_user(session, credits=1000)
    async with async_client(live_server, token_of(settings, user)) as client:
        models = await client.models.list()
        one = await client.models.retrieve(MODEL)
    assert [m.id for m in models.data] == [MODEL]
    assert one.id == MODEL


async def test_sdk_sees_402_with_balance_and_required(
    live_server, session, settings, db, price
) -> None:
    user = await create_user(session, credits=3)
    async with async_client(live_server, token_of(settings, user)) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    error = caught.value
    assert error.status_code == 402
    assert error.code == "insufficient_credits"
    assert isinstance(error.body, dict)
    assert error.body["balance"] == 3
    assert error.body["required"] > 3
    assert (await account(db, user.id)).balance == 3
    await assert_ledger_invariant(db)


# --- Streams that end early -----------------------------------------------------------------


async def test_client_abort_after_the_first_token_charges_what_was_produced(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.reply(REPLY, token_delay_seconds=STALL_SECONDS))
    with sync_client(live_server, token_of(settings, user)) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
        )
        received = ""
        for chunk in stream:
            received += (chunk.choices[0].delta.content or "") if chunk.choices else ""
            if received:
                break
        stream.close()  # the client leaves mid-answer
    assert received == "one"

    await wait_for_settlement(db, user.id)
    # No usage ever came: the prompt and the one token produced, counted locally.
    expected = price.cost(counted_prompt(), 1)
    assert await chat_net(db, user.id) == expected
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.prompt_tokens, usage.completion_tokens) == (
        "client_aborted",
        counted_prompt(),
        1,
    )
    assert usage.credits_charged == expected
    # AccessAI closed the provider's stream too, so it stopped producing.
    [upstream_request] = openai_upstream.wait_for_requests(1)
    assert upstream_request.outcome == "client_disconnected"
    await assert_ledger_invariant(db)


async def test_client_abort_after_n_chunks(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.reply(REPLY, token_delay_seconds=0.25))
    async with async_client(live_server, token_of(settings, user)) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
        )
        contents: list[str] = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                contents.append(chunk.choices[0].delta.content)
            if len(contents) == 3:
                break
        await stream.close()

    await wait_for_settlement(db, user.id)
    [usage] = await usage_of(db, user.id)
    assert usage.outcome == "client_aborted"
    # What the server had relayed when it noticed: the three the client read,
    # or a fourth already on its way.
    assert usage.completion_tokens in (3, 4)
    expected = price.cost(counted_prompt(), usage.completion_tokens)
    assert (usage.credits_charged, await chat_net(db, user.id)) == (expected, expected)
    await assert_ledger_invariant(db)


@pytest.mark.parametrize(
    "behaviour", [Behaviour.drop_after(0), Behaviour.error_event_after(0)], ids=["drop", "event"]
)
async def test_provider_error_before_the_first_token_charges_nothing(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, behaviour: Behaviour
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(behaviour)
    with sync_client(live_server, token_of(settings, user)) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
        )
        with pytest.raises(openai.APIError) as caught:
            for _ in stream:
                pass
    assert caught.value.code == "engine_error"

    await wait_for_settlement(db, user.id)
    assert (await account(db, user.id)).balance == 1000
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.credits_charged) == ("engine_error", 0)
    await assert_ledger_invariant(db)


@pytest.mark.parametrize(
    "behaviour", [Behaviour.drop_after(3), Behaviour.error_event_after(3)], ids=["drop", "event"]
)
async def test_provider_error_after_the_first_chunks_charges_what_was_produced(
    live_server,
    session,
    settings,
    db,
    openai_upstream: OpenAIUpstream,
    price,
    behaviour: Behaviour,
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour(**{**behaviour.to_dict(), "content": REPLY}))
    received = ""
    async with async_client(live_server, token_of(settings, user)) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
        )
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                received += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert received == "".join(WORDS[:3])

    await wait_for_settlement(db, user.id)
    expected = price.cost(counted_prompt(), 3)
    assert await chat_net(db, user.id) == expected
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.completion_tokens, usage.credits_charged) == (
        "engine_error",
        3,
        expected,
    )
    await assert_ledger_invariant(db)


async def test_a_stream_without_reported_usage_is_counted(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.reply(REPLY, include_usage=False))
    with sync_client(live_server, token_of(settings, user)) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    # The provider sent no usage; the client asked for it and gets our count.
    *content, last = chunks
    assert all(c.usage is None for c in content)
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        counted_prompt(),
        TOKENIZER.count(REPLY),
    )

    await wait_for_settlement(db, user.id)
    expected = price.cost(counted_prompt(), TOKENIZER.count(REPLY))
    assert await chat_net(db, user.id) == expected
    [usage] = await usage_of(db, user.id)
    assert (usage.outcome, usage.credits_charged) == ("success", expected)
    await assert_ledger_invariant(db)


# --- Concurrency ------------------------------------------------------------------------------


async def test_concurrent_streams_cannot_overdraw(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    token = token_of(settings, user)
    # Learn the hold of one such request, then leave room for exactly two.
    async with async_client(live_server, token) as client:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
    [first] = await holds_of(db, user.id)
    balance = (await account(db, user.id)).balance
    await _spend_down_to(db, user.id, balance, keep=2 * first.amount + first.amount // 2)
    openai_upstream.set_default(Behaviour.reply(REPLY, token_delay_seconds=0.05))

    async def one_stream() -> str:
        async with async_client(live_server, token) as client:
            try:
                stream = await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
                )
            except openai.APIStatusError as error:
                return "refused" if error.status_code == 402 else f"HTTP {error.status_code}"
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    results = await asyncio.gather(*(one_stream() for _ in range(5)))

    assert results.count(REPLY) >= 2
    assert results.count("refused") >= 1
    assert set(results) <= {REPLY, "refused"}
    await wait_for_settlement(db, user.id, count=1 + results.count(REPLY))
    await assert_ledger_invariant(db)
    assert (await account(db, user.id)).balance >= 0


async def test_a_second_stream_is_refused_while_the_first_holds_the_balance(
    live_server, session, settings, db, openai_upstream: OpenAIUpstream, price
) -> None:
    user = await create_user(session, credits=1000)
    token = token_of(settings, user)
    openai_upstream.script(Behaviour.reply(REPLY, token_delay_seconds=0.1))
    with sync_client(live_server, token) as client:
        first = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
        )
        iterator = iter(first)
        next(iterator)  # the first stream is open: its hold is taken
        [hold] = await holds_of(db, user.id)
        await _spend_down_to(db, user.id, 1000 - hold.amount, keep=hold.amount - 1)

        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
            )
        assert caught.value.status_code == 402
        rest = "".join(c.choices[0].delta.content or "" for c in iterator if c.choices)
    assert rest == REPLY

    await wait_for_settlement(db, user.id)
    assert await chat_net(db, user.id) == price.cost(reported_prompt(), 8)
    await assert_ledger_invariant(db)


async def _spend_down_to(db, user_id, balance: int, *, keep: int) -> None:
    """Take the balance down to ``keep`` with an ordinary ledger movement."""
    from accessai.core.db import create_sessionmaker
    from accessai.credits import service as credits

    if balance > keep:
        async with create_sessionmaker(db.engine)() as session, session.begin():
            await credits.deduct_credits(session, user_id, balance - keep, "admin_deduct")


# --- The stream deadline ------------------------------------------------------------------------


async def test_a_stream_past_its_deadline_is_cut_and_charged_for_what_it_produced(
    settings_factory: Callable[..., Settings],
    openai_upstream: OpenAIUpstream,
    session,
    db,
    price,
) -> None:
    settings = chat_settings(
        settings_factory,
        openai_upstream.base_url,
        chat_max_duration_seconds=0.6,
        chat_hold_timeout_seconds=61,
    )
    user = await create_user(session, credits=1000)
    openai_upstream.script(Behaviour.reply(REPLY, token_delay_seconds=0.25))
    with LiveServer(create_app(settings)) as server:
        async with async_client(server, token_of(settings, user)) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=20, stream=True
            )
            received = ""
            with pytest.raises(openai.APIError, match="longer than this server allows"):
                async for chunk in stream:
                    received += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        await wait_for_settlement(db, user.id)

    assert received
    assert received != REPLY
    [usage] = await usage_of(db, user.id)
    assert usage.outcome == "deadline_exceeded"
    assert usage.completion_tokens == TOKENIZER.count(received)
    assert await chat_net(db, user.id) == price.cost(counted_prompt(), usage.completion_tokens)
    await assert_ledger_invariant(db)
