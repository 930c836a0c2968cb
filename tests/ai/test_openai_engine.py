"""The openai engine through the real SDK against the loopback stand-in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from accessai.ai.engines import text as text_tools
from accessai.ai.engines.base import (
    AIEngine,
    EngineResponseError,
    EngineTimeoutError,
    EngineUnavailableError,
)
from accessai.ai.engines.openai_compatible import (
    ANALYSIS_PROMPT,
    SUMMARY_PROMPT,
    OpenAICompatibleEngine,
)
from tests.support import openai_wire as wire
from tests.support.network import free_port
from tests.support.openai_fixtures import STANDIN_API_KEY
from tests.support.openai_upstream import Behaviour, OpenAIUpstream

TEXT = (
    "The new library opened downtown today. Visitors loved the bright reading rooms! "
    "Some worried about parking, but most left happy."
)
ANALYSIS = {
    "sentiment_label": "positive",
    "sentiment_score": 0.62,
    "keywords": ["library", "reading rooms", "parking"],
}


def make_engine(base_url: str, **options: Any) -> OpenAICompatibleEngine:
    settings: dict[str, Any] = {
        "base_url": base_url,
        "api_key": STANDIN_API_KEY,
        "model": "test-model",
        "timeout_seconds": 5.0,
        "max_retries": 0,
    }
    settings.update(options)
    return OpenAICompatibleEngine(**settings)


@pytest.fixture
async def engine(
    openai_upstream: OpenAIUpstream,
) -> AsyncIterator[OpenAICompatibleEngine]:
    engine = make_engine(openai_upstream.base_url)
    yield engine
    await engine.aclose()


def test_satisfies_the_engine_protocol(engine: OpenAICompatibleEngine) -> None:
    as_protocol: AIEngine = engine
    assert as_protocol.name == "openai"


async def test_summarize(engine: OpenAICompatibleEngine, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.script(Behaviour.reply("  A library opened; visitors liked it.\n"))

    result = await engine.summarize(TEXT)

    assert result.summary == "A library opened; visitors liked it."
    assert result.model == "test-model"
    assert result.usage.prompt_tokens == wire.count_tokens(SUMMARY_PROMPT) + wire.count_tokens(TEXT)
    assert result.usage.completion_tokens == wire.count_tokens(
        "  A library opened; visitors liked it.\n"
    )
    sent = openai_upstream.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.bearer_token == STANDIN_API_KEY
    assert sent.json["model"] == "test-model"
    assert sent.json["messages"] == [
        {"role": "system", "content": SUMMARY_PROMPT},
        {"role": "user", "content": TEXT},
    ]
    assert "response_format" not in sent.json
    assert sent.json["max_completion_tokens"] == 1024
    assert "max_tokens" not in sent.json
    assert sent.json.get("stream") in (None, False)


async def test_analyze(engine: OpenAICompatibleEngine, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.script(Behaviour.reply(json.dumps(ANALYSIS)))

    result = await engine.analyze(TEXT)

    # Counts come from the text itself, not from the model.
    assert (result.word_count, result.sentence_count) == (20, 3)
    assert result.reading_time_seconds == 6  # 20 words at 200 per minute, rounded up
    assert result.sentiment_label == "positive"
    assert result.sentiment_score == 0.62
    assert result.keywords == ["library", "reading rooms", "parking"]
    assert result.model == "test-model"
    assert result.usage.completion_tokens == wire.count_tokens(json.dumps(ANALYSIS))
    assert result.usage.prompt_tokens == wire.count_prompt_tokens(
        openai_upstream.last_request.json["messages"]
    )

    sent = openai_upstream.last_request.json
    assert sent["model"] == "test-model"
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"] == [
        {"role": "system", "content": ANALYSIS_PROMPT},
        {"role": "user", "content": TEXT},
    ]
    # JSON mode needs the word JSON in the prompt; the schema names every key.
    for key in ("JSON", "sentiment_label", "sentiment_score", "keywords"):
        assert key in ANALYSIS_PROMPT


async def test_analyze_accepts_harmless_variations(
    engine: OpenAICompatibleEngine, openai_upstream: OpenAIUpstream
) -> None:
    reply = {
        "sentiment_label": " Negative ",
        "sentiment_score": -1,
        "keywords": [
            " Parking ",
            "parking",
            "",
            "x" * 65,
            *[f"k{i}" for i in range(12)],
        ],
        "word_count": 9999,  # ignored: counts are computed locally
    }
    openai_upstream.script(Behaviour.reply(f"```json\n{json.dumps(reply)}\n```"))

    result = await engine.analyze(TEXT)

    assert result.sentiment_label == "negative"
    assert result.sentiment_score == -1.0
    assert result.keywords == ["Parking", *[f"k{i}" for i in range(9)]]
    assert result.word_count == text_tools.count_words(TEXT)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("The sentiment is positive.", id="not-json"),
        pytest.param('{"sentiment_label": "positive", ', id="truncated-json"),
        pytest.param("[1, 2, 3]", id="not-an-object"),
        pytest.param(json.dumps({**ANALYSIS, "keywords": None}), id="keywords-null"),
        pytest.param(
            json.dumps({k: v for k, v in ANALYSIS.items() if k != "keywords"}),
            id="missing-field",
        ),
        pytest.param(json.dumps({**ANALYSIS, "sentiment_score": "0.6"}), id="score-as-string"),
        pytest.param(json.dumps({**ANALYSIS, "sentiment_score": True}), id="score-as-bool"),
        pytest.param(json.dumps({**ANALYSIS, "sentiment_score": 1.5}), id="score-too-high"),
        pytest.param(json.dumps({**ANALYSIS, "sentiment_score": -1.01}), id="score-too-low"),
        pytest.param(
            '{"sentiment_label": "positive", "sentiment_score": NaN, "keywords": []}',
            id="score-nan",
        ),
        pytest.param(json.dumps({**ANALYSIS, "sentiment_label": "joyful"}), id="unknown-label"),
        pytest.param(json.dumps({**ANALYSIS, "keywords": ["ok", 3]}), id="keyword-not-string"),
        pytest.param(json.dumps({**ANALYSIS, "keywords": "library"}), id="keywords-not-list"),
    ],
)
async def test_analyze_rejects_malformed_output(
    engine: OpenAICompatibleEngine, openai_upstream: OpenAIUpstream, content: str
) -> None:
    openai_upstream.script(Behaviour.reply(content))

    with pytest.raises(EngineResponseError) as caught:
        await engine.analyze(TEXT)

    assert caught.value.status_code == 502
    assert caught.value.code == "engine_error"
    assert "analysis" in caught.value.message


async def test_schema_error_names_the_field(
    engine: OpenAICompatibleEngine, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.script(Behaviour.reply(json.dumps({**ANALYSIS, "sentiment_score": 3})))
    with pytest.raises(EngineResponseError, match=r"invalid: sentiment_score\)"):
        await engine.analyze(TEXT)


@pytest.mark.parametrize("method", ["summarize", "analyze"])
@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        pytest.param(Behaviour(empty_choices=True), "no choices", id="empty-choices"),
        pytest.param(Behaviour.reply("   \n"), "no text", id="blank-content"),
        pytest.param(Behaviour(raw_body="<html>Bad gateway</html>"), "malformed", id="html-body"),
        pytest.param(
            Behaviour(raw_body=json.dumps({"id": "x", "object": "chat.completion"})),
            "no choices",
            id="body-without-choices",
        ),
        pytest.param(
            Behaviour(
                raw_body=json.dumps(
                    wire.completion_payload(
                        completion_id="c",
                        created=0,
                        model="test-model",
                        content=None,
                        finish_reason="content_filter",
                        usage=None,
                    )
                )
            ),
            "no text",
            id="null-content",
        ),
        pytest.param(Behaviour(fail_after_chunks=0), "connection", id="body-cut-short"),
    ],
)
async def test_malformed_provider_answers(
    engine: OpenAICompatibleEngine,
    openai_upstream: OpenAIUpstream,
    method: str,
    behaviour: Behaviour,
    message: str,
) -> None:
    openai_upstream.script(behaviour)
    with pytest.raises(EngineResponseError, match=message):
        await getattr(engine, method)(TEXT)


@pytest.mark.parametrize("method", ["summarize", "analyze"])
@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "it failed internally"),
        (503, "it failed internally"),
        (429, "it is rate limiting us or the quota is exhausted"),
        (401, "it refused the configured credentials"),
        (400, "it rejected the request"),
    ],
)
async def test_http_errors(
    engine: OpenAICompatibleEngine,
    openai_upstream: OpenAIUpstream,
    method: str,
    status: int,
    reason: str,
) -> None:
    # Providers may quote the key in their error text; it must not reach the client.
    leaky = f"Incorrect API key provided: {STANDIN_API_KEY}. internal shard db-7 failed"
    openai_upstream.script(Behaviour.error(status, leaky))

    with pytest.raises(EngineResponseError) as caught:
        await getattr(engine, method)(TEXT)

    assert caught.value.message == f"The AI provider answered with HTTP {status}: {reason}."
    rendered = json.dumps(caught.value.body())
    assert STANDIN_API_KEY not in rendered
    assert "shard" not in rendered
    assert len(openai_upstream.chat_requests) == 1  # max_retries=0: no retry


async def test_retries_when_configured(openai_upstream: OpenAIUpstream) -> None:
    engine = make_engine(openai_upstream.base_url, max_retries=1)
    openai_upstream.script(Behaviour.error(503, headers={"retry-after-ms": "10"}))
    try:
        result = await engine.summarize(TEXT)
    finally:
        await engine.aclose()
    assert result.summary == f"echo: {TEXT}"
    assert [r.status for r in openai_upstream.chat_requests] == [503, 200]


async def test_timeout(openai_upstream: OpenAIUpstream) -> None:
    engine = make_engine(openai_upstream.base_url, timeout_seconds=0.5)
    openai_upstream.script(Behaviour.hang(2))
    try:
        with pytest.raises(EngineTimeoutError) as caught:
            await engine.summarize(TEXT)
    finally:
        await engine.aclose()
    assert caught.value.status_code == 504
    assert caught.value.message == "The AI provider did not answer within 0.5 seconds."


async def test_connection_refused() -> None:
    engine = make_engine(f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(EngineUnavailableError) as caught:
            await engine.analyze(TEXT)
    finally:
        await engine.aclose()
    assert caught.value.status_code == 503
    assert caught.value.message == "The AI provider could not be reached."


async def test_wrong_key_is_a_response_error_without_the_key(
    openai_upstream: OpenAIUpstream,
) -> None:
    engine = make_engine(openai_upstream.base_url, api_key="sk-wrong-secret")
    try:
        with pytest.raises(EngineResponseError) as caught:
            await engine.summarize(TEXT)
    finally:
        await engine.aclose()
    assert openai_upstream.last_request.bearer_token == "sk-wrong-secret"
    assert "sk-wrong-secret" not in json.dumps(caught.value.body())


async def test_token_limit_options(openai_upstream: OpenAIUpstream) -> None:
    legacy = make_engine(
        openai_upstream.base_url, token_limit_field="max_tokens", max_output_tokens=64
    )
    unlimited = make_engine(openai_upstream.base_url, max_output_tokens=None)
    try:
        await legacy.summarize(TEXT)
        legacy_request = openai_upstream.last_request.json
        await unlimited.summarize(TEXT)
        unlimited_request = openai_upstream.last_request.json
    finally:
        await legacy.aclose()
        await unlimited.aclose()
    assert legacy_request["max_tokens"] == 64
    assert "max_completion_tokens" not in legacy_request
    assert "max_tokens" not in unlimited_request
    assert "max_completion_tokens" not in unlimited_request


async def test_usage_is_optional(
    engine: OpenAICompatibleEngine, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.script(Behaviour.reply("Short.", include_usage=False))
    result = await engine.summarize(TEXT)
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (None, None)


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="api_key"):
        make_engine("http://127.0.0.1:1/v1", api_key="")
    with pytest.raises(ValueError, match="timeout_seconds"):
        make_engine("http://127.0.0.1:1/v1", timeout_seconds=0)
    with pytest.raises(ValueError, match="max_retries"):
        make_engine("http://127.0.0.1:1/v1", max_retries=-1)
