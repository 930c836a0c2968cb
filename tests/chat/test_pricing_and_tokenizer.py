"""The rounding rule, the price book, the offline tokenizer and the chat settings."""

from __future__ import annotations

import pytest

from accessai.chat.pricing import ModelNotFoundError, ModelPrice, PriceBook
from accessai.chat.tokenizer import (
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    MessageText,
    load_tokenizer,
)
from accessai.core.config import ChatModel, ConfigError, load_settings
from tests.support.settings import make_settings


def price(prompt_per_1k: int, completion_per_1k: int) -> ModelPrice:
    return ModelPrice(
        model="m",
        upstream_model="m",
        prompt_credits_per_1k=prompt_per_1k,
        completion_credits_per_1k=completion_per_1k,
        max_output_tokens=100,
        token_limit_field="max_completion_tokens",
    )


@pytest.mark.parametrize(
    ("prompt", "completion", "expected"),
    [
        (0, 0, 0),  # nothing used, nothing charged
        (1, 0, 1),  # 0.5 credits round up to 1
        (2, 0, 1),  # exactly 1
        (3, 0, 2),  # 1.5 -> 2
        (1, 1, 2),  # 0.5 + 1.5 = 2: rounded once on the total, not per part (1 + 2)
        (3, 3, 6),  # 1.5 + 4.5 = 6
        (1000, 1000, 2000),
    ],
)
def test_cost_is_the_ceiling_of_the_exact_total(
    prompt: int, completion: int, expected: int
) -> None:
    assert price(500, 1500).cost(prompt, completion) == expected


def test_cost_of_whole_credit_prices_needs_no_rounding() -> None:
    assert price(1000, 2000).cost(7, 5) == 7 + 10


def test_cost_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="never negative"):
        price(1, 1).cost(-1, 0)


def test_price_book_defaults_and_lookup() -> None:
    book = PriceBook(
        {
            "small": ChatModel(prompt_credits_per_1k=1, completion_credits_per_1k=4),
            "big": ChatModel(
                prompt_credits_per_1k=10,
                completion_credits_per_1k=30,
                upstream_model="provider-big-2025",
                max_output_tokens=16,
                token_limit_field="max_tokens",
            ),
        },
        default_max_output_tokens=4096,
    )
    assert [p.model for p in book] == ["small", "big"]
    small = book.get("small")
    assert (small.upstream_model, small.max_output_tokens) == ("small", 4096)
    assert small.token_limit_field == "max_completion_tokens"
    big = book.get("big")
    assert (big.upstream_model, big.max_output_tokens, big.token_limit_field) == (
        "provider-big-2025",
        16,
        "max_tokens",
    )
    with pytest.raises(ModelNotFoundError) as caught:
        book.get("nope")
    assert caught.value.status_code == 404


# --- Tokenizer ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_tokenizer_is_cl100k_loaded_offline(tokenizer) -> None:
    # The published cl100k_base ids of "Hello, world!": the real encoding, not a guess.
    assert tokenizer._encoding.encode_ordinary("Hello, world!") == [9906, 11, 1917, 0]
    assert tokenizer.count("Hello, world!") == 4
    assert tokenizer.count("") == 0


def test_special_token_text_is_counted_as_text(tokenizer) -> None:
    # A user typing "<|endoftext|>" must not make counting fail or shrink to one token.
    assert tokenizer.count("<|endoftext|>") > 1


def test_message_overhead_follows_openais_rule(tokenizer) -> None:
    messages = [
        MessageText(role="system", content="Be brief."),
        MessageText(role="user", content="Hello, world!", name="ada"),
    ]
    expected = (
        REPLY_PRIMING_TOKENS
        + TOKENS_PER_MESSAGE
        + tokenizer.count("system")
        + tokenizer.count("Be brief.")
        + TOKENS_PER_MESSAGE
        + tokenizer.count("user")
        + tokenizer.count("Hello, world!")
        + TOKENS_PER_NAME
        + tokenizer.count("ada")
    )
    assert tokenizer.count_messages(messages) == expected


# --- Settings ---------------------------------------------------------------------------


def test_chat_models_are_read_as_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "CHAT_MODELS",
        '{"fast": {"prompt_credits_per_1k": 2, "completion_credits_per_1k": 6,'
        ' "upstream_model": "llama3.1:8b"}}',
    )
    monkeypatch.setenv("CHAT_MAX_TOKENS_CAP", "512")
    settings = load_settings()
    assert settings.chat_models["fast"].upstream_model == "llama3.1:8b"
    assert settings.chat_max_tokens_cap == 512
    assert not settings.chat_configured  # no OPENAI_API_KEY


def test_default_price_book_offers_gpt_4o_mini() -> None:
    settings = make_settings()
    assert settings.chat_models["gpt-4o-mini"].prompt_credits_per_1k == 1
    assert settings.chat_models["gpt-4o-mini"].completion_credits_per_1k == 4


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("CHAT_MODELS", "{}", "CHAT_MODELS"),
        (
            "CHAT_MODELS",
            '{"m": {"prompt_credits_per_1k": -1, "completion_credits_per_1k": 1}}',
            "CHAT_MODELS",
        ),
        (
            "CHAT_MODELS",
            '{"m": {"prompt_credits_per_1k": 1, "completion_credits_per_1k": 1, "typo": 1}}',
            "CHAT_MODELS",
        ),
        ("CHAT_HOLD_TIMEOUT_SECONDS", "30", "CHAT_HOLD_TIMEOUT_SECONDS"),
    ],
)
def test_bad_chat_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path, variable: str, value: str, named: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()
