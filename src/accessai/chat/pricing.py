"""The chat price book and the one rounding rule.

Prices are integer credits per 1,000 tokens, separately for prompt and
completion tokens. A request's cost is the exact total rounded up once:

    cost = ceil((prompt_tokens * prompt_per_1k + completion_tokens * completion_per_1k) / 1000)

so any request that used a token costs at least 1 credit, and rounding is
applied to the request's total, never per part.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from accessai.core.config import ChatModel, Settings
from accessai.core.errors import NotFoundError


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


@dataclass(frozen=True, slots=True)
class ModelPrice:
    model: str  # the public id clients ask for
    upstream_model: str
    prompt_credits_per_1k: int
    completion_credits_per_1k: int
    max_output_tokens: int
    token_limit_field: str

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Credits for this much usage: the exact total, rounded up once."""
        if prompt_tokens < 0 or completion_tokens < 0:
            raise ValueError("token counts are never negative")
        millicredits = (
            prompt_tokens * self.prompt_credits_per_1k
            + completion_tokens * self.completion_credits_per_1k
        )
        return -(-millicredits // 1000)  # integer ceil, no floats


class PriceBook:
    """The models on offer, in the order the settings list them."""

    def __init__(self, models: dict[str, ChatModel], *, default_max_output_tokens: int) -> None:
        self._prices = {
            name: ModelPrice(
                model=name,
                upstream_model=entry.upstream_model or name,
                prompt_credits_per_1k=entry.prompt_credits_per_1k,
                completion_credits_per_1k=entry.completion_credits_per_1k,
                max_output_tokens=entry.max_output_tokens or default_max_output_tokens,
                token_limit_field=entry.token_limit_field,
            )
            for name, entry in models.items()
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceBook:
        return cls(settings.chat_models, default_max_output_tokens=settings.chat_max_tokens_cap)

    def __iter__(self) -> Iterator[ModelPrice]:
        return iter(self._prices.values())

    def get(self, model: str) -> ModelPrice:
        try:
            return self._prices[model]
        except KeyError:
            raise ModelNotFoundError(
                f"The model '{model}' does not exist or is not offered here; "
                "GET /v1/models lists the models on offer."
            ) from None
