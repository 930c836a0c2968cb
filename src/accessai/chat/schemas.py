"""Request and response bodies of the OpenAI-compatible chat API.

The request accepts the parameters of OpenAI's chat completions that do not
change what a request can cost beyond its messages and ``max_tokens``.
Anything else (tools, images, audio, ``n`` > 1, logprobs...) is refused
with a 400 naming the parameter, rather than silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from accessai.chat.tokenizer import MessageText

MAX_MESSAGES = 1024


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(default=None, min_length=1, max_length=64)

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def counted(self) -> MessageText:
        return MessageText(role=self.role, content=self.text, name=self.name)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Whether the client wants the final usage chunk; we always ask the
    # provider for it, and forward it only when asked.
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object"]


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=128)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    # Either name limits the completion; both held and passed to the provider.
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    user: str | None = Field(default=None, max_length=256)
    response_format: ResponseFormat | None = None
    # Only one choice: n > 1 multiplies what the completion can cost.
    n: Literal[1] | None = None

    @property
    def requested_max_tokens(self) -> int | None:
        limits = [v for v in (self.max_tokens, self.max_completion_tokens) if v is not None]
        return min(limits) if limits else None

    @property
    def wants_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def sampling_options(self) -> dict[str, object]:
        """The parameters passed through to the provider unchanged."""
        return self.model_dump(
            include={
                "temperature",
                "top_p",
                "stop",
                "presence_penalty",
                "frequency_penalty",
                "seed",
                "user",
                "response_format",
            },
            exclude_none=True,
        )


# --- GET /v1/models -------------------------------------------------------------


class ModelPricing(BaseModel):
    prompt_credits_per_1k: int
    completion_credits_per_1k: int
    max_output_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "accessai"
    # Not in OpenAI's schema; SDKs keep it as an extra field.
    pricing: ModelPricing


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
